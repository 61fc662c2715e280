"""Embedded model weights and sample inputs, installed as package data (``relevance.assets``)."""
