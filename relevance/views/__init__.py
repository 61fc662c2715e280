"""Attention views (placeholder while being built)."""
from relevance.views.capture import AttentionCapture, TokenAttention, capture
