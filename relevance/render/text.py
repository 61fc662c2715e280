"""Token relevance as text heatmaps: self-contained HTML (browsers, Jupyter) and PNG images.

A text classifier's explanation is one score per token: word pieces, special tokens ([CLS],
[SEP], <s>, ...) and padding. `token_heatmap` turns tokens and scores into what is drawn: display
strings without subword markers (`clean_token`), optionally whole words (`aggregate_words`, "sum"
or "max" of their pieces), special tokens shown or hidden, padding hidden, and a colour per item:

* unsigned scores (none negative) use a sequential map ("reds": white -> red) scaled 0..max;
* signed scores (some negative) use a diverging map ("bwr": blue < 0, white = 0, red > 0) scaled
  by the largest magnitude, so that 0 is always white;
* a constant or all-zero map (of the items shown) is drawn all neutral (the colour of 0).

The scale is taken over the items shown, so hiding special tokens, whose relevance is often far
larger than any word's, lets the words use the whole colour range. `text_heatmap_html` writes an
HTML fragment (inline styles only, no script, every token escaped) with a tooltip per item and a
legend; `text_heatmap_document` wraps fragments into a standalone page; `text_heatmap_image`
draws the same heatmap as a picture with Pillow's built-in font (see :mod:`relevance.render.fonts`
for the characters it lacks), and `save_png` writes it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from relevance.render.colormaps import colormap_table, contrast_text_colour, levels
from relevance.render.fonts import default_font, drawable_text

__all__ = [
    "HtmlFragment",
    "PADDING_TOKENS",
    "SPECIAL_TOKENS",
    "TokenHeatmap",
    "aggregate_words",
    "clean_token",
    "save_png",
    "text_heatmap_document",
    "text_heatmap_html",
    "text_heatmap_image",
    "token_heatmap",
    "word_ids_from_tokens",
]

#: Special tokens of common tokenizers (BERT, RoBERTa, GPT-2, CLIP, T5, ...), recognised when no
#: ``word_ids`` are given (with ``word_ids``, every token without a word index is special).
SPECIAL_TOKENS: frozenset[str] = frozenset(
    {"[CLS]", "[SEP]", "[MASK]", "[UNK]", "<s>", "</s>", "<mask>", "<unk>", "<cls>", "<sep>",
     "<bos>", "<eos>", "<|endoftext|>", "<|startoftext|>"}
)
#: Padding tokens; positions where ``attention_mask`` is 0 are padding too.
PADDING_TOKENS: frozenset[str] = frozenset({"[PAD]", "<pad>", "<|pad|>"})

_CONTINUATION = "##"  # WordPiece (BERT): a piece that continues the previous one
_SPACE_MARKERS = ("\u0120", "\u2581")  # "Ġ" byte-level BPE (RoBERTa, GPT-2), "▁" SentencePiece: space before
_END_OF_WORD = "</w>"  # CLIP's BPE: the piece ends a word
_DEFAULT_COLORMAPS = {False: "reds", True: "bwr"}
_REDUCTIONS = ("max", "sum")


class HtmlFragment(str):
    """An HTML string that Jupyter displays as HTML (it has ``_repr_html_``); otherwise a plain ``str``."""

    def _repr_html_(self) -> str:
        return str(self)


# ------------------------------------------------------------------------------ tokens and words


def clean_token(token: str) -> str:
    """The display string of one token, without its subword markers.

    Strips the WordPiece continuation prefix ``##`` (BERT: ``"##ing"`` -> ``"ing"``), the
    space-before markers ``Ġ`` (byte-level BPE of RoBERTa and GPT-2: ``"Ġworld"`` -> ``"world"``)
    and ``▁`` (SentencePiece), and CLIP's end-of-word suffix ``</w>`` (``"world</w>"`` ->
    ``"world"``). Special tokens (``"[CLS]"``, ``"</s>"``) are returned unchanged, and so is a
    token that is nothing but a marker (GPT-2's lone ``"Ġ"``), so that it stays visible.

    Parameters
    ----------
    token:
        One tokenizer piece, as ``tokenizer.convert_ids_to_tokens`` returns it.
    """
    token = str(token)
    if token in SPECIAL_TOKENS or token in PADDING_TOKENS:
        return token
    text = token
    if text.startswith(_CONTINUATION):
        text = text[len(_CONTINUATION):]
    elif text.startswith(_SPACE_MARKERS):
        text = text[1:]
    if text.endswith(_END_OF_WORD):
        text = text[: -len(_END_OF_WORD)]
    return text or token


def _is_special_or_padding(token: str) -> bool:
    return token in SPECIAL_TOKENS or token in PADDING_TOKENS


def word_ids_from_tokens(tokens: Sequence[str]) -> list[int | None]:
    """Word indices guessed from subword markers, for when the tokenizer's ``word_ids()`` is unavailable.

    The marker style is read from the tokens: ``##`` continuations (WordPiece), ``Ġ`` / ``▁`` word
    starts (byte-level BPE, SentencePiece: a piece without it continues the previous word) or
    ``</w>`` word ends (CLIP); with none of them, every token is a word. Special and padding
    tokens get None. Prefer ``BatchEncoding.word_ids()`` where you have it: it also knows where
    punctuation splits words.

    Parameters
    ----------
    tokens:
        (L,) token strings.

    Returns
    -------
    list[int | None]
        (L,) word index per token (0, 1, ...; pieces of one word share it) or None.
    """
    tokens = [str(t) for t in tokens]
    words = [t for t in tokens if not _is_special_or_padding(t)]
    if any(t.startswith(_CONTINUATION) for t in words):
        style = "wordpiece"
    elif any(t.startswith(_SPACE_MARKERS) for t in words):
        style = "space_marker"
    elif any(t.endswith(_END_OF_WORD) for t in words):
        style = "end_marker"
    else:
        style = "whole_words"
    word_ids: list[int | None] = []
    current = -1
    previous: str | None = None  # the previous non-special token, None after a special one
    for token in tokens:
        if _is_special_or_padding(token):
            word_ids.append(None)
            previous = None
            continue
        if previous is None or style == "whole_words":
            starts = True
        elif style == "wordpiece":
            starts = not token.startswith(_CONTINUATION)
        elif style == "space_marker":
            starts = token.startswith(_SPACE_MARKERS)
        else:
            starts = previous.endswith(_END_OF_WORD)
        current += int(starts)
        word_ids.append(current)
        previous = token
    return word_ids


def _as_scores(scores: Sequence[float] | np.ndarray | torch.Tensor, length: int) -> np.ndarray:
    """(L,) finite floats (NaN and infinities -> 0), keeping a floating dtype (integers -> float64)."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu()
        scores = (scores.float() if scores.dtype in (torch.bfloat16, torch.float16) else scores).numpy()
    values = np.asarray(scores)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if values.ndim != 1 or len(values) != length:
        raise ValueError(f"scores must be one value per token: shape ({length},), got {values.shape}")
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _word_runs(word_ids: Sequence[int | None]) -> list[list[int]]:
    """Token positions of each word: runs of consecutive tokens with the same (non-None) word index.

    Runs rather than equal indices, because Hugging Face restarts word indices at 0 in the second
    text of a pair (the two are separated by a special token).
    """
    runs: list[list[int]] = []
    previous = None
    for position, word in enumerate(word_ids):
        if word is None:
            previous = None
            continue
        if runs and word == previous:
            runs[-1].append(position)
        else:
            runs.append([position])
        previous = word
    return runs


def _reduce(values: np.ndarray, reduce: str) -> np.floating:
    if reduce == "max":
        return values.max()
    return values.dtype.type(values.sum(dtype=np.float64))


def aggregate_words(
    tokens: Sequence[str],
    scores: Sequence[float] | np.ndarray | torch.Tensor,
    word_ids: Sequence[int | None] | None = None,
    *,
    reduce: str = "max",
) -> tuple[list[str], np.ndarray]:
    """Merge word pieces into words: display strings and one score per word.

    Parameters
    ----------
    tokens:
        (L,) token strings.
    scores:
        (L,) relevance per token (NaN and infinities count as 0).
    word_ids:
        (L,) word index per token, None for special and padding tokens (as Hugging Face's
        ``BatchEncoding.word_ids()``); None: guessed by `word_ids_from_tokens`.
    reduce:
        "max" (the ERASER evaluation of Chefer et al. takes the largest piece score; for a
        signed map this is the most positive piece) or "sum" (relevance is additive under LRP).

    Returns
    -------
    tuple[list[str], np.ndarray]
        The words (their pieces cleaned by `clean_token` and joined), and (W,) their scores, in
        text order, with the scores' floating dtype. Special and padding tokens are left out.
    """
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(_REDUCTIONS)}, got {reduce!r}")
    tokens = [str(t) for t in tokens]
    values = _as_scores(scores, len(tokens))
    word_ids = _check_word_ids(word_ids, tokens)
    runs = _word_runs(word_ids)
    words = ["".join(clean_token(tokens[p]) for p in run) for run in runs]
    word_scores = np.array([_reduce(values[run], reduce) for run in runs], dtype=values.dtype)
    return words, word_scores


def _check_word_ids(word_ids: Sequence[int | None] | None, tokens: list[str]) -> list[int | None]:
    if word_ids is None:
        return word_ids_from_tokens(tokens)
    word_ids = [None if w is None else int(w) for w in word_ids]
    if len(word_ids) != len(tokens):
        raise ValueError(f"word_ids must have one entry per token ({len(tokens)}), got {len(word_ids)}")
    return word_ids


# ------------------------------------------------------------------------------ what is drawn


@dataclass(frozen=True)
class TokenHeatmap:
    """A text heatmap ready to draw (built by `token_heatmap`).

    Attributes
    ----------
    texts:
        (N,) display strings of the items shown (tokens or words).
    scores:
        (N,) their scores.
    kinds:
        (N,) "text", "special" or "padding".
    word_starts:
        (N,) True where an item begins a new word (a space goes before it).
    colours:
        (N, 3) uint8 RGB background colours.
    signed:
        Whether the diverging scale (centred on 0) is used.
    vmax:
        The score drawn with the strongest colour (+vmax, and -vmax when signed); 0 when
        the map is constant.
    colormap:
        The colour map's name.
    """

    texts: list[str]
    scores: np.ndarray
    kinds: list[str]
    word_starts: list[bool]
    colours: np.ndarray
    signed: bool
    vmax: float
    colormap: str


def _items(
    tokens: list[str],
    values: np.ndarray,
    word_ids: list[int | None],
    padding: list[bool],
    words: bool,
    reduce: str,
) -> list[tuple[str, np.floating, str, bool]]:
    """(text, score, kind, starts a word) of every token, or of every word and special token."""
    run_of = {run[0]: run for run in _word_runs(word_ids)} if words else {}
    inside_word = {p for run in run_of.values() for p in run[1:]}
    items = []
    previous_word = None
    for position, token in enumerate(tokens):
        word = word_ids[position]
        if word is None:
            kind = "padding" if padding[position] or token in PADDING_TOKENS else "special"
            items.append((token, values[position], kind, True))
            previous_word = None
        elif words and position in run_of:
            run = run_of[position]
            text = "".join(clean_token(tokens[p]) for p in run)
            items.append((text, _reduce(values[run], reduce), "text", True))
        elif position not in inside_word:
            starts = word != previous_word
            items.append((clean_token(token), values[position], "text", starts))
        if word is not None:
            previous_word = word
    return items


def _colour_scale(scores: np.ndarray, signed: bool | None, vmax: float | None) -> tuple[bool, float]:
    """(signed, vmax) of the items shown: vmax 0 for a constant or all-zero map (all neutral)."""
    values = scores.astype(np.float64)
    if signed is None:
        signed = bool(values.size and values.min() < 0)
    if vmax is not None:
        vmax = float(vmax)
        if not np.isfinite(vmax) or vmax < 0:
            raise ValueError(f"vmax must be a finite number >= 0, got {vmax!r}")
        return bool(signed), vmax
    if values.size == 0 or values.max() == values.min():
        return bool(signed), 0.0
    return bool(signed), float(np.abs(values).max() if signed else max(values.max(), 0.0))


def token_heatmap(
    tokens: Sequence[str],
    scores: Sequence[float] | np.ndarray | torch.Tensor,
    word_ids: Sequence[int | None] | None = None,
    *,
    words: bool = False,
    reduce: str = "max",
    show_special: bool = True,
    show_padding: bool = False,
    signed: bool | None = None,
    colormap: str | None = None,
    vmax: float | None = None,
    attention_mask: Sequence[int] | np.ndarray | torch.Tensor | None = None,
) -> TokenHeatmap:
    """Decide what a text heatmap shows and in which colours.

    Parameters
    ----------
    tokens:
        (L,) token strings, as ``tokenizer.convert_ids_to_tokens`` returns them.
    scores:
        (L,) relevance per token (NaN and infinities count as 0).
    word_ids:
        (L,) word index per token, None for special and padding tokens (Hugging Face's
        ``BatchEncoding.word_ids()``); None: guessed from the tokens (`word_ids_from_tokens`).
    words:
        Show whole words (scores merged by ``reduce``) instead of word pieces.
    reduce:
        "max" or "sum", for ``words`` (see `aggregate_words`).
    show_special:
        Show special tokens ([CLS], [SEP], <s>, ...).
    show_padding:
        Show padding tokens (padding tokens and positions where ``attention_mask`` is 0).
    signed:
        Force the diverging (True) or the sequential (False; negative scores get the colour
        of 0) scale; None: diverging when a score shown is negative.
    colormap:
        A name in `relevance.render.COLORMAPS`; default "bwr" when signed, else "reds".
    vmax:
        The score given the strongest colour, e.g. to compare several texts on one scale;
        default: the largest score shown (largest magnitude when signed).
    attention_mask:
        (L,) 1 for real tokens, 0 for padding.

    Returns
    -------
    TokenHeatmap
        The `TokenHeatmap`.
    """
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(_REDUCTIONS)}, got {reduce!r}")
    tokens = [str(t) for t in tokens]
    values = _as_scores(scores, len(tokens))
    word_ids = _check_word_ids(word_ids, tokens)
    if attention_mask is None:
        padding = [False] * len(tokens)
    else:
        mask = np.asarray(attention_mask.cpu() if isinstance(attention_mask, torch.Tensor) else attention_mask)
        if mask.shape != (len(tokens),):
            raise ValueError(f"attention_mask must have shape ({len(tokens)},), got {mask.shape}")
        padding = [not bool(m) for m in mask]
        word_ids = [None if pad else w for w, pad in zip(word_ids, padding)]
    items = _items(tokens, values, word_ids, padding, words, reduce)
    shown = {"text": True, "special": show_special, "padding": show_padding}
    items = [item for item in items if shown[item[2]]]
    item_scores = np.array([item[1] for item in items], dtype=values.dtype)
    is_signed, scale = _colour_scale(item_scores, signed, vmax)
    name = colormap if colormap is not None else _DEFAULT_COLORMAPS[is_signed]
    table = colormap_table(name)
    relative = item_scores.astype(np.float64) / scale if scale > 0 else np.zeros(len(items))
    return TokenHeatmap(
        texts=[item[0] for item in items],
        scores=item_scores,
        kinds=[item[2] for item in items],
        word_starts=[item[3] for item in items],
        colours=table[levels(relative, signed=is_signed)].reshape(-1, 3),
        signed=is_signed,
        vmax=scale,
        colormap=name,
    )


def _as_heatmap(tokens, scores, word_ids, options: dict) -> TokenHeatmap:
    """The heatmap given, or the one `token_heatmap` builds from tokens, scores and options."""
    if isinstance(tokens, TokenHeatmap):
        if scores is not None or word_ids is not None or options:
            raise ValueError("pass either a TokenHeatmap or tokens and scores with options, not both")
        return tokens
    if scores is None:
        raise ValueError("scores are required with tokens (one score per token)")
    return token_heatmap(tokens, scores, word_ids, **options)


def _score_text(score: np.floating) -> str:
    """The shortest text that reads back as exactly this score (in its own precision)."""
    return str(score.item() if score.dtype == np.float64 else score)


def _legend_labels(heatmap: TokenHeatmap) -> tuple[str, str | None, str]:
    """(left, middle or None, right) labels of the legend."""
    top = f"{heatmap.vmax:.3g}"
    return (f"\u2212{top}", "0", f"+{top}") if heatmap.signed else ("0", None, top)


# ------------------------------------------------------------------------------ HTML


_FRAGMENT_STYLE = (
    "font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; "
    "font-size: 15px; line-height: 2; color: #111; background: #fff; padding: 8px 10px; "
    "border: 1px solid #ddd; border-radius: 6px; overflow-wrap: anywhere;"
)
_ITEM_STYLE = "padding: 2px 3px; border-radius: 3px; white-space: pre-wrap;"
_SPECIAL_STYLE = " font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.85em; outline: 1px dashed #888;"


def _rgb(colour: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in colour))


def _legend_html(heatmap: TokenHeatmap) -> str:
    table = colormap_table(heatmap.colormap)
    if heatmap.signed:
        stops = table[[0, 32, 64, 96, 128, 160, 192, 224, 255]]
    else:
        stops = table[[0, 64, 128, 192, 255]]
    gradient = ", ".join(_rgb(c) for c in stops)
    left, middle, right = (html.escape(t) if t is not None else None for t in _legend_labels(heatmap))
    kind = "signed: blue negative, red positive" if heatmap.signed else "0 to max"
    bar = (
        f'<span style="display: inline-block; position: relative; width: 140px; height: 14px; '
        f'vertical-align: middle; border: 1px solid #999; background: linear-gradient(to right, {gradient});">'
        + (f'<span style="position: absolute; left: 0; right: 0; top: 0; text-align: center; font-size: 10px; '
           f'line-height: 14px; color: #000;">{middle}</span>' if middle else "")
        + "</span>"
    )
    return (
        '<div style="margin-top: 6px; font-size: 12px; line-height: 1.4; color: #444;">'
        f"<span>{left}</span> {bar} <span>{right}</span> "
        f'<span style="color: #777;">&nbsp;relevance ({html.escape(kind)})</span></div>'
    )


def text_heatmap_html(
    tokens: Sequence[str] | TokenHeatmap,
    scores: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    word_ids: Sequence[int | None] | None = None,
    *,
    legend: bool = True,
    **options,
) -> HtmlFragment:
    """A self-contained HTML fragment of a text heatmap.

    Each item is a ``<span>`` with its colour as background, black or white text (whichever
    contrasts more) and its exact score in a tooltip (``title``); words are separated by spaces
    so long texts wrap, pieces of one word stay together. Inline styles only: no script, no
    external stylesheet or font, so it reads the same offline, in any browser and in Jupyter
    (the returned string displays as HTML there). Every token is HTML-escaped.

    Parameters
    ----------
    tokens:
        (L,) token strings, or a `TokenHeatmap` (then leave out scores and options).
    scores:
        (L,) relevance per token.
    word_ids:
        (L,) word index per token, None for special and padding tokens.
    legend:
        Add a colour legend (min / 0 / max) under the text.
    **options:
        The keyword options of `token_heatmap` (words, reduce, show_special,
        show_padding, signed, colormap, vmax, attention_mask).

    Returns
    -------
    HtmlFragment
        The fragment, a ``<div>``.
    """
    heatmap = _as_heatmap(tokens, scores, word_ids, options)
    parts = []
    for index, (text, score, kind, starts, colour) in enumerate(
        zip(heatmap.texts, heatmap.scores, heatmap.kinds, heatmap.word_starts, heatmap.colours)
    ):
        if index and starts:
            parts.append(" ")
        style = f"background-color: {_rgb(colour)}; color: {_rgb(contrast_text_colour(colour))}; {_ITEM_STYLE}"
        if kind != "text":
            style += _SPECIAL_STYLE
        tooltip = html.escape(f"{text}: {_score_text(score)}" + ("" if kind == "text" else f" ({kind})"))
        parts.append(f'<span style="{style}" title="{tooltip}">{html.escape(text)}</span>')
    body = "".join(parts) if parts else '<span style="color: #777;">(no tokens to show)</span>'
    legend_html = _legend_html(heatmap) if legend and parts else ""
    return HtmlFragment(f'<div style="{_FRAGMENT_STYLE}"><div>{body}</div>{legend_html}</div>')


def text_heatmap_document(
    fragments: str | Sequence[str],
    captions: str | Sequence[str] | None = None,
    *,
    title: str = "Token relevance",
) -> str:
    """A standalone HTML page (UTF-8, no external resources) holding one or several fragments.

    Parameters
    ----------
    fragments:
        Fragments from `text_heatmap_html` (inserted as they are).
    captions:
        One caption per fragment, shown above it (escaped), or None.
    title:
        The page's title and heading (escaped).

    Returns
    -------
    str
        The document, ``<!DOCTYPE html>`` ... ``</html>``.
    """
    fragments = [fragments] if isinstance(fragments, str) else list(fragments)
    if captions is None:
        captions = [None] * len(fragments)
    elif isinstance(captions, str):
        captions = [captions]
    if len(captions) != len(fragments):
        raise ValueError(f"got {len(captions)} captions for {len(fragments)} fragments")
    sections = []
    for fragment, caption in zip(fragments, captions):
        heading = (
            f'<h2 style="font-size: 16px; font-weight: 600; margin: 0 0 6px;">{html.escape(str(caption))}</h2>'
            if caption
            else ""
        )
        sections.append(f'<section style="margin: 0 0 22px;">{heading}{fragment}</section>')
    escaped_title = html.escape(title)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escaped_title}</title>\n</head>\n"
        '<body style="margin: 24px auto; max-width: 960px; padding: 0 16px; background: #fafafa; '
        "font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; color: #111;\">\n"
        f'<h1 style="font-size: 20px; margin: 0 0 16px;">{escaped_title}</h1>\n'
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


# ------------------------------------------------------------------------------ PNG


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(round(right - left))


def _layout(
    widths: list[int], word_starts: list[bool], space: int, line_width: int
) -> list[list[tuple[int, int]]]:
    """Lines of (item index, x) placements: items wrap by word (a word's pieces stay together
    unless the word alone is wider than a line); an item wider than a line gets a line of its own."""
    groups: list[list[int]] = []
    for index, starts in enumerate(word_starts):
        if starts or not groups:
            groups.append([index])
        else:
            groups[-1].append(index)
    lines: list[list[tuple[int, int]]] = [[]]
    x = 0
    for group in groups:
        group_width = sum(widths[i] for i in group)
        gap = space if lines[-1] else 0
        if lines[-1] and x + gap + group_width > line_width:
            lines.append([])
            x, gap = 0, 0
        x += gap
        for index in group:
            if lines[-1] and x + widths[index] > line_width:  # a word longer than a line: break it
                lines.append([])
                x = 0
            lines[-1].append((index, x))
            x += widths[index]
    return lines


def text_heatmap_image(
    tokens: Sequence[str] | TokenHeatmap,
    scores: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    word_ids: Sequence[int | None] | None = None,
    *,
    width: int = 800,
    font_size: int = 18,
    legend: bool = True,
    **options,
) -> np.ndarray:
    """A text heatmap drawn as a picture, lines wrapped to ``width`` pixels.

    The same items and colours as `text_heatmap_html` (each on a rounded box, black or white
    text), special tokens outlined, and a legend bar under the text. Drawn with Pillow's
    built-in font: characters it lacks are spelled with look-alikes or "?"
    (:func:`relevance.render.fonts.drawable_text`); the HTML shows any script.

    Parameters
    ----------
    tokens:
        (L,) token strings, or a `TokenHeatmap` (then leave out scores and options).
    scores:
        (L,) relevance per token.
    word_ids:
        (L,) word index per token, None for special and padding tokens.
    width:
        Image width in pixels (at least 4 font sizes).
    font_size:
        Text size in pixels.
    legend:
        Add the colour legend under the text.
    **options:
        The keyword options of `token_heatmap`.

    Returns
    -------
    np.ndarray
        uint8 RGB (H, width, 3); H grows with the number of lines.
    """
    heatmap = _as_heatmap(tokens, scores, word_ids, options)
    font_size = int(font_size)
    width = int(width)
    if font_size < 6 or width < 4 * font_size:
        raise ValueError(f"need font_size >= 6 and width >= 4 * font_size, got {font_size} and {width}")
    font = default_font(font_size)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin, pad_x, pad_y = font_size // 2 + 2, max(2, font_size // 5), max(2, font_size // 6)
    space = max(3, _text_width(scratch, "a a", font) - _text_width(scratch, "aa", font))
    _, line_top, _, line_bottom = scratch.textbbox((0, 0), "Ag", font=font)
    box_height = int(line_bottom - line_top) + 2 * pad_y
    line_height = box_height + max(3, font_size // 3)

    texts = [drawable_text(text, font) for text in heatmap.texts]
    widths = [min(_text_width(scratch, t, font) + 2 * pad_x, width - 2 * margin) for t in texts]
    lines = _layout(widths, heatmap.word_starts, space, width - 2 * margin) if texts else []
    legend_height = (font_size + 2 * margin) if legend and texts else 0
    height = 2 * margin + max(1, len(lines)) * line_height + legend_height
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    radius = max(2, font_size // 6)
    for row, line in enumerate(lines):
        y = margin + row * line_height
        for index, x in line:
            colour = tuple(int(c) for c in heatmap.colours[index])
            box = (margin + x, y, margin + x + widths[index] - 1, y + box_height - 1)
            outline = (136, 136, 136) if heatmap.kinds[index] != "text" else None
            draw.rounded_rectangle(box, radius=radius, fill=colour, outline=outline)
            draw.text(
                (margin + x + pad_x, y + pad_y - line_top), texts[index], font=font,
                fill=contrast_text_colour(colour),
            )
    if legend_height:
        _draw_legend(draw, heatmap, margin, height - legend_height + margin // 2, font_size)
    return np.asarray(image).copy()


def _draw_legend(draw: ImageDraw.ImageDraw, heatmap: TokenHeatmap, x: int, y: int, font_size: int) -> None:
    """Legend bar with its end (and centre) labels, starting at (x, y)."""
    font = default_font(max(8, font_size * 3 // 4))
    left, middle, right = (drawable_text(t, font) if t is not None else None for t in _legend_labels(heatmap))
    table = colormap_table(heatmap.colormap)
    bar_width, bar_height = 8 * font_size, max(8, font_size * 2 // 3)
    _, label_top, _, label_bottom = draw.textbbox((0, 0), "0", font=font)
    text_y = y + (bar_height - (label_bottom - label_top)) // 2 - label_top
    draw.text((x, text_y), left, font=font, fill=(68, 68, 68))
    bar_x = x + _text_width(draw, left, font) + font_size // 2
    steps = np.rint(np.linspace(0, 255, bar_width)).astype(int)
    for offset, level in enumerate(steps):
        draw.line([(bar_x + offset, y), (bar_x + offset, y + bar_height - 1)], fill=tuple(int(c) for c in table[level]))
    draw.rectangle((bar_x - 1, y - 1, bar_x + bar_width, y + bar_height), outline=(153, 153, 153))
    if middle is not None:
        middle_x = bar_x + bar_width // 2 - _text_width(draw, middle, font) // 2
        draw.text((middle_x, text_y), middle, font=font, fill=(0, 0, 0))
    draw.text((bar_x + bar_width + font_size // 2, text_y), right, font=font, fill=(68, 68, 68))


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 RGB (H, W, 3) image as a PNG file (parent folders are created); returns the path."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {array.dtype} {tuple(array.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path
