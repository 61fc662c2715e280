"""Tests for relevance.render.text: token cleanup, word aggregation, HTML and PNG heatmaps."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relevance.render import COLORMAPS
from relevance.render.text import (
    HtmlFragment,
    aggregate_words,
    clean_token,
    save_png,
    text_heatmap_document,
    text_heatmap_html,
    text_heatmap_image,
    token_heatmap,
    word_ids_from_tokens,
)

# "[CLS] the movie was unbelievably good [SEP] [PAD] [PAD]" as BERT's WordPiece splits it.
BERT_TOKENS = ["[CLS]", "the", "movie", "was", "un", "##believ", "##ably", "good", "[SEP]", "[PAD]", "[PAD]"]
BERT_WORD_IDS = [None, 0, 1, 2, 3, 3, 3, 4, None, None, None]
BERT_MASK = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
BERT_SCORES = [0.9, 0.1, 0.5, -0.2, 0.3, -0.1, 0.4, 0.8, 0.6, 0.0, 0.0]


class _Spans(HTMLParser):
    """Collects the text and attributes of every <span title=...> of a fragment, and every tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict] = []
        self.tags: list[str] = []
        self._open: list[dict | None] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        item = {"text": "", **attributes} if tag == "span" and "title" in attributes else None
        if item is not None:
            self.items.append(item)
        self._open.append(item)

    def handle_endtag(self, tag):
        self._open.pop()

    def handle_data(self, data):
        if self._open and self._open[-1] is not None:
            self._open[-1]["text"] += data


def spans(fragment: str) -> _Spans:
    parser = _Spans()
    parser.feed(fragment)
    return parser


def background(item: dict) -> tuple[int, int, int]:
    value = re.search(r"background-color: #([0-9a-f]{6})", item["style"]).group(1)
    return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))


# ------------------------------------------------------------------------------ tokens and words


@pytest.mark.parametrize(
    "token, expected",
    [
        ("##ing", "ing"),  # WordPiece continuation
        ("\u0120world", "world"),  # RoBERTa / GPT-2 "Ġ": a space before
        ("world</w>", "world"),  # CLIP end of word
        ("\u2581world", "world"),  # SentencePiece
        ("hello", "hello"),
        ("[CLS]", "[CLS]"),
        ("</s>", "</s>"),
        ("<|endoftext|>", "<|endoftext|>"),
        ("\u0120", "\u0120"),  # a lone marker stays visible
        ("##", "##"),
    ],
)
def test_clean_token_strips_subword_markers(token, expected):
    assert clean_token(token) == expected


def test_aggregate_words_sums_and_maxes_pieces():
    words, summed = aggregate_words(BERT_TOKENS, BERT_SCORES, BERT_WORD_IDS, reduce="sum")
    assert words == ["the", "movie", "was", "unbelievably", "good"]
    np.testing.assert_allclose(summed, [0.1, 0.5, -0.2, 0.3 - 0.1 + 0.4, 0.8])
    words, maxed = aggregate_words(BERT_TOKENS, np.array(BERT_SCORES), BERT_WORD_IDS, reduce="max")
    assert words == ["the", "movie", "was", "unbelievably", "good"]
    np.testing.assert_allclose(maxed, [0.1, 0.5, -0.2, 0.4, 0.8])
    assert aggregate_words(BERT_TOKENS, torch.tensor(BERT_SCORES), BERT_WORD_IDS)[1].dtype == np.float32
    with pytest.raises(ValueError, match="reduce"):
        aggregate_words(BERT_TOKENS, BERT_SCORES, BERT_WORD_IDS, reduce="mean")
    with pytest.raises(ValueError, match="one value per token"):
        aggregate_words(BERT_TOKENS, BERT_SCORES[:-1], BERT_WORD_IDS)


def test_aggregate_words_of_roberta_clip_and_sentence_pairs():
    roberta = ["<s>", "The", "\u0120un", "believ", "able", "\u0120end", "</s>"]
    words, scores = aggregate_words(roberta, [5, 1, 2, 3, 4, -1, 5], [None, 0, 1, 1, 1, 2, None], reduce="sum")
    assert words == ["The", "unbelievable", "end"] and scores.tolist() == [1.0, 9.0, -1.0]
    clip = ["<|startoftext|>", "a</w>", "hot", "dog</w>", "<|endoftext|>"]
    words, scores = aggregate_words(clip, [0, 1, 2, 7, 0], None, reduce="max")  # word ids from the markers
    assert words == ["a", "hotdog"] and scores.tolist() == [1.0, 7.0]
    # Hugging Face restarts word indices in the second text of a pair: words are runs, not equal ids.
    pair = ["[CLS]", "yes", "[SEP]", "yes", "##ss", "[SEP]"]
    words, scores = aggregate_words(pair, [0, 1, 0, 2, 3, 0], [None, 0, None, 0, 0, None], reduce="sum")
    assert words == ["yes", "yesss"] and scores.tolist() == [1.0, 5.0]


def test_word_ids_are_guessed_from_the_markers():
    assert word_ids_from_tokens(BERT_TOKENS) == BERT_WORD_IDS
    roberta = ["<s>", "The", "\u0120un", "believ", "able", "\u0120end", "</s>", "<pad>"]
    assert word_ids_from_tokens(roberta) == [None, 0, 1, 1, 1, 2, None, None]
    clip = ["<|startoftext|>", "a</w>", "hot", "dog</w>", "!</w>", "<|endoftext|>"]
    assert word_ids_from_tokens(clip) == [None, 0, 1, 1, 2, None]
    assert word_ids_from_tokens(["plain", "words", "only"]) == [0, 1, 2]


# ------------------------------------------------------------------------------ HTML


def test_every_token_is_escaped_and_there_is_no_script():
    tokens = ["[CLS]", "<script>alert(1)</script>", "&", '"quoted"', "<b>bold</b>", "[SEP]"]
    fragment = text_heatmap_html(tokens, [0.1, 0.9, 0.3, 0.2, 0.5, 0.1])
    assert "<script" not in fragment.lower() and "<b>" not in fragment
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in fragment
    parsed = spans(fragment)
    assert set(parsed.tags) <= {"div", "span"}
    assert [item["text"] for item in parsed.items] == tokens  # shown as text, exactly
    assert not any(name.startswith("on") for item in parsed.items for name in item)  # no event handlers
    assert parsed.items[1]["title"] == "<script>alert(1)</script>: 0.9"  # tooltip: the exact score


def test_tooltips_show_exact_scores():
    parsed = spans(text_heatmap_html(["a", "b", "c"], np.array([0.1, 1e-8, -0.123456789], dtype=np.float64)))
    assert [item["title"] for item in parsed.items] == ["a: 0.1", "b: 1e-08", "c: -0.123456789"]
    parsed = spans(text_heatmap_html(["a"], torch.tensor([0.3])))  # float32 scores print as float32
    assert parsed.items[0]["title"] == "a: 0.3"


def test_special_tokens_are_shown_or_hidden_and_padding_hidden_unless_asked():
    shown = [item["text"] for item in spans(text_heatmap_html(BERT_TOKENS, BERT_SCORES, BERT_WORD_IDS)).items]
    assert shown == ["[CLS]", "the", "movie", "was", "un", "believ", "ably", "good", "[SEP]"]
    hidden = [
        item["text"]
        for item in spans(text_heatmap_html(BERT_TOKENS, BERT_SCORES, BERT_WORD_IDS, show_special=False)).items
    ]
    assert hidden == ["the", "movie", "was", "un", "believ", "ably", "good"]
    padded = spans(text_heatmap_html(BERT_TOKENS, BERT_SCORES, BERT_WORD_IDS, show_padding=True)).items
    assert [item["text"] for item in padded][-2:] == ["[PAD]", "[PAD]"]
    assert "(padding)" in padded[-1]["title"] and "(special)" in padded[0]["title"]
    words = spans(text_heatmap_html(BERT_TOKENS, BERT_SCORES, BERT_WORD_IDS, words=True, show_special=False)).items
    assert [item["text"] for item in words] == ["the", "movie", "was", "unbelievably", "good"]
    # Padding found through the attention mask, whatever its token.
    masked = token_heatmap(["a", "b", "x", "x"], [1, 2, 3, 4], [0, 1, None, None], attention_mask=[1, 1, 1, 0])
    assert masked.texts == ["a", "b", "x"] and masked.kinds == ["text", "text", "special"]


def test_pieces_of_a_word_stay_together_and_words_are_separated_by_spaces():
    fragment = text_heatmap_html(BERT_TOKENS, BERT_SCORES, BERT_WORD_IDS, show_special=False, legend=False)
    text = re.sub(r"<[^>]+>", "", fragment)
    assert html.unescape(text) == "the movie was unbelievably good"


def test_signed_maps_use_the_diverging_colour_map():
    heatmap = token_heatmap(["bad", "neutral", "good", "meh"], [-2.0, 0.0, 2.0, 0.5])
    assert heatmap.signed and heatmap.colormap == "bwr" and heatmap.vmax == 2.0
    negative, zero, positive, weak = (tuple(int(v) for v in c) for c in heatmap.colours)
    assert negative == (0, 0, 255) and positive == (255, 0, 0) and zero == (255, 255, 255)
    assert weak[0] == 255 and weak[1] == weak[2] and 100 < weak[1] < 255  # light red
    parsed = spans(text_heatmap_html(["bad", "neutral", "good"], [-2.0, 0.0, 2.0])).items
    blue, white, red = (background(item) for item in parsed)
    assert blue[2] > 200 > blue[0] and red[0] > 200 > red[2] and min(white) > 240
    assert "color: #ffffff" in parsed[0]["style"] and "color: #000000" in parsed[1]["style"]  # contrast
    fragment = text_heatmap_html(["bad", "good"], [-1.0, 1.0])
    assert "\u22121" in fragment and "+1" in fragment  # the legend: -max / 0 / +max


def test_unsigned_maps_use_a_sequential_map_from_zero_and_signed_can_be_forced():
    heatmap = token_heatmap(["a", "b", "c"], [0.0, 1.0, 4.0])
    assert not heatmap.signed and heatmap.colormap == "reds" and heatmap.vmax == 4.0
    np.testing.assert_array_equal(heatmap.colours, COLORMAPS["reds"][[0, 64, 255]])
    forced = token_heatmap(["a", "b", "c"], [0.0, 1.0, 4.0], signed=True)
    assert forced.signed and tuple(forced.colours[0]) == (255, 255, 255)
    unsigned = token_heatmap(["a", "b"], [-1.0, 1.0], signed=False)  # negative: the colour of 0
    assert not unsigned.signed and tuple(unsigned.colours[0]) == (255, 255, 255)
    shared = token_heatmap(["a", "b"], [1.0, 2.0], vmax=4.0, colormap="viridis")
    np.testing.assert_array_equal(shared.colours, COLORMAPS["viridis"][[64, 128]])


@pytest.mark.parametrize("scores", [[0.0, 0.0, 0.0], [0.7, 0.7, 0.7], [-3.0, -3.0, -3.0], [np.nan, np.inf, 0.0]])
def test_constant_maps_are_neutral_and_free_of_nan(scores):
    heatmap = token_heatmap(["a", "b", "c"], scores)
    assert heatmap.vmax == 0.0 and np.isfinite(heatmap.scores).all()
    assert (heatmap.colours == 255).all()  # white: the colour of 0 for both default maps
    fragment = text_heatmap_html(["a", "b", "c"], scores)
    assert "nan" not in fragment.lower() and "inf" not in fragment.lower()
    assert {background(item) for item in spans(fragment).items} == {(255, 255, 255)}


def test_fragment_is_jupyter_displayable_and_documents_are_standalone():
    fragment = text_heatmap_html(["hi"], [1.0])
    assert isinstance(fragment, HtmlFragment) and isinstance(fragment, str) and fragment._repr_html_() == fragment
    document = text_heatmap_document([fragment, text_heatmap_html(["yo"], [2.0])], ["first <i>", "second"],
                                     title="A & B")
    assert document.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in document
    assert "<title>A &amp; B</title>" in document and "first &lt;i&gt;" in document
    assert fragment in document and document.count("<section") == 2
    assert not re.search(r"<(script|link|img|iframe)\b|url\(|@import|https?://", document)
    assert text_heatmap_document(fragment).count("<section") == 1
    with pytest.raises(ValueError, match="captions"):
        text_heatmap_document([fragment], ["a", "b"])


def test_empty_and_all_hidden_texts_render():
    fragment = text_heatmap_html(["[CLS]", "[SEP]"], [1.0, 2.0], show_special=False)
    assert "no tokens to show" in fragment
    assert text_heatmap_image(["[CLS]"], [1.0], show_special=False).shape[1] == 800


# ------------------------------------------------------------------------------ PNG


LONG_TEXT = ("the quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill " * 3).split()


def test_png_heatmap_shape_colours_and_wrapping(tmp_path):
    scores = np.sin(np.arange(len(LONG_TEXT)))
    wide = text_heatmap_image(LONG_TEXT, scores, width=900, font_size=18)
    narrow = text_heatmap_image(LONG_TEXT, scores, width=400, font_size=18)
    assert wide.dtype == np.uint8 and wide.ndim == 3 and wide.shape[1:] == (900, 3)
    assert narrow.shape[1] == 400 and narrow.shape[0] > wide.shape[0] * 1.6  # more lines
    colours = {tuple(c) for c in wide.reshape(-1, 3)[::7]}
    assert any(c[2] > 200 and c[0] < 60 for c in colours) and any(c[0] > 200 and c[2] < 60 for c in colours)
    path = save_png(wide, tmp_path / "sub" / "heatmap.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and np.array_equal(np.asarray(image.convert("RGB")), wide)
    with pytest.raises(ValueError, match="uint8"):
        save_png(wide.astype(float), tmp_path / "bad.png")


def test_png_heatmap_draws_text_of_any_script_without_failing():
    image = text_heatmap_image(["café", "−", "日本", "<script>", "naïve"], [1, -1, 0.5, 0.2, 0.0], width=300)
    assert image.shape[1] == 300 and (image < 50).any()  # dark text drawn
    heatmap = token_heatmap(["a", "b"], [1.0, -1.0])
    np.testing.assert_array_equal(text_heatmap_image(heatmap, width=300), text_heatmap_image(["a", "b"], [1.0, -1.0],
                                                                                               width=300))
    with pytest.raises(ValueError, match="either a TokenHeatmap"):
        text_heatmap_image(heatmap, [1.0])


# ------------------------------------------------------------------------------ in a browser


def test_html_document_in_chromium_shows_the_tokens_as_text_without_errors(tmp_path):
    pytest.importorskip("playwright")
    from demos.app_testing import chromium_context

    tokens = ["[CLS]", "<script>alert('x')</script>", "un", "##believ", "##able", "&amp;", "[SEP]"]
    scores = [0.2, -0.8, 0.5, 0.1, 0.9, 0.0, 0.3]
    document = text_heatmap_document(
        [text_heatmap_html(tokens, scores), text_heatmap_html(tokens, scores, words=True, show_special=False)],
        ["tokens", "words"],
    )
    page_path = Path(tmp_path) / "heatmap.html"
    page_path.write_text(document, encoding="utf-8")
    with chromium_context(viewport=(700, 500)) as context:
        page = context.new_page()
        problems = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("dialog", lambda dialog: problems.append("a script ran: " + dialog.message))
        page.goto(page_path.as_uri())
        assert page.evaluate("document.scripts.length") == 0
        first = page.locator("section").first.locator("span[title]")
        assert first.all_inner_texts() == ["[CLS]", "<script>alert('x')</script>", "un", "believ", "able", "&amp;",
                                           "[SEP]"]
        for index in range(first.count()):
            assert first.nth(index).is_visible()
        words = page.locator("section").nth(1).locator("span[title]").all_inner_texts()
        assert words == ["<script>alert('x')</script>", "unbelievable", "&amp;"]
        assert first.nth(1).get_attribute("title") == "<script>alert('x')</script>: -0.8"
        page.screenshot(path=str(tmp_path / "heatmap.png"), full_page=True)
    assert problems == []
