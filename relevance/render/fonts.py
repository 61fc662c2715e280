"""Pillow's built-in font for labels drawn into images, and text it can draw.

Only Pillow's own font is used (no system or network fonts), so pictures look the same everywhere.
With FreeType, ``ImageFont.load_default(size=...)`` gives a scalable subset of Aileron that covers
printable ASCII and a few symbols (``· … « » ‘ ’ “ ” ±``), not accented letters or other scripts:
`drawable_text` spells such characters with ones the font has (``é`` -> ``e``, ``−`` -> ``-``) and
shows the rest as ``?``. The HTML renderer (:mod:`relevance.render.text`) has no such limit.
"""

from __future__ import annotations

import functools
import unicodedata

from PIL import ImageFont

__all__ = ["default_font", "drawable_text"]

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Characters the built-in font lacks, spelled with ones it has (after accents are dropped).
_SUBSTITUTES = {
    "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u00d7": "x", "\u2192": "->", "\u2190": "<-",
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE", "\u00f8": "o",
    "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D", "\u2039": "<", "\u203a": ">",
}
_MISSING = "?"


@functools.lru_cache(maxsize=16)
def default_font(size: int) -> Font:
    """Pillow's built-in font at ``size`` pixels (the fixed-size bitmap font when Pillow lacks FreeType)."""
    try:
        return ImageFont.load_default(size=max(1, int(size)))
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


def _glyph_bitmap(font: Font, character: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(character)
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=4096)
def _has_glyph(font: Font, character: str) -> bool:
    """Whether ``font`` draws ``character`` as itself rather than as its "missing glyph" box."""
    if character == " ":
        return True
    if not character.isprintable():
        return False
    return _glyph_bitmap(font, character) != _glyph_bitmap(font, "\ue000")  # a private-use code point


def drawable_text(text: str, font: Font) -> str:
    """``text`` with every character ``font`` cannot draw replaced: accents dropped, a few look-alikes,
    otherwise ``?``. Control characters (tabs, newlines) become spaces."""
    out = []
    for character in text:
        if character in "\t\n\r\v\f":
            out.append(" ")
        elif _has_glyph(font, character):
            out.append(character)
        else:
            substitute = _SUBSTITUTES.get(character)
            if substitute is None:
                base = "".join(c for c in unicodedata.normalize("NFKD", character) if not unicodedata.combining(c))
                substitute = base if base and base != character and all(_has_glyph(font, c) for c in base) else ""
            out.append(substitute or _MISSING)
    return "".join(out)
