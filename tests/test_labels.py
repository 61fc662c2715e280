"""The one class-name matcher (:mod:`relevance.labels`), and proof that the CLI and the demo answer alike."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from timm.data import ImageNetInfo

from relevance.cli.explain import UsageError, resolve_target
from relevance.data import SHAPE_CLASSES
from relevance.labels import AmbiguousClassError, ClassSpecError, UnknownClassError, resolve_class

REPO = Path(__file__).resolve().parents[1]
_INFO = ImageNetInfo()
IMAGENET = [_INFO.index_to_description(i) for i in range(1000)]
SMALL = ["tench, Tinca tinca", "tabby, tabby cat", "crane", "tiger cat", "crane", "maillot", "maillot, tank suit"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        (281, 281), ("281", 281), (" 281 ", 281), ("0", 0),  # indices
        ("tabby, tabby cat", 281), ("tabby ,tabby   cat", 281),  # a whole name; spaces never matter
        ("tabby cat", 281), ("tabby", 281), ("Egyptian cat", 285),  # a synonym
        ("TABBY, Tabby Cat", 281), ("Tabby Cat", 281), ("egyptian CAT", 285),  # any case
        ("maillot", 638), ("tank suit", 639), ("maillot, tank suit", 639),  # a whole name beats a synonym
        ("Cardigan", 264), ("cardigan", 474), ("CARDIGAN", 474),  # the exact case beats any case
    ],
)
def test_imagenet_specs(spec, expected):
    assert IMAGENET[134] == IMAGENET[517] == "crane"  # the premise of the ambiguity test below
    assert resolve_class(spec, IMAGENET) == expected


def test_ambiguous_names_are_errors_naming_every_candidate():
    with pytest.raises(AmbiguousClassError) as error:
        resolve_class("crane", IMAGENET)
    assert error.value.candidates == (134, 517)
    assert str(error.value) == "'crane' is ambiguous: it names classes 134 (crane), 517 (crane); give the index"
    with pytest.raises(AmbiguousClassError) as error:  # a synonym shared by two classes
        resolve_class("Grass Snake", IMAGENET)
    assert error.value.candidates == (55, 57)
    assert "55 (green snake, grass snake), 57 (garter snake, grass snake)" in str(error.value)


def test_unknown_names_list_close_matches_with_their_indices():
    with pytest.raises(UnknownClassError) as error:
        resolve_class("tabby kat", IMAGENET)
    assert str(error.value) == "unknown class 'tabby kat'; close matches: 'tabby cat' (281)"
    with pytest.raises(UnknownClassError) as error:  # names that hold the word come first
        resolve_class("cat", IMAGENET)
    assert error.value.candidates == (281, 282, 283, 284, 285)
    assert "'tabby cat' (281), 'tiger cat' (282), 'Persian cat' (283)" in str(error.value)
    with pytest.raises(UnknownClassError, match=r"give one of the model's 1000 class names or an index 0\.\.999"):
        resolve_class("qqqqqq", IMAGENET)
    with pytest.raises(UnknownClassError, match=r"the model's classes are: circle, square, triangle, cross"):
        resolve_class("zebra", SHAPE_CLASSES)


def test_indices_and_bad_specs():
    with pytest.raises(ClassSpecError, match=r"class index 6 is out of range: the model has classes 0\.\.5"):
        resolve_class("6", SHAPE_CLASSES)
    with pytest.raises(ClassSpecError, match="out of range"):
        resolve_class(-1, SHAPE_CLASSES)
    with pytest.raises(ClassSpecError, match="no class given"):
        resolve_class("   ", SHAPE_CLASSES)
    with pytest.raises(ClassSpecError, match=r"no class names: give the class as an index 0\.\.4"):
        resolve_class("star", None, 5)
    assert resolve_class("4", None, 5) == 4
    with pytest.raises(TypeError):
        resolve_class(True, SHAPE_CLASSES)
    with pytest.raises(TypeError):
        resolve_class(2.0, SHAPE_CLASSES)


def test_the_engine_module_imports_no_model_demo_or_gradio_code():
    code = ("import sys, relevance.labels; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'demos', 'models') "
            "or m.startswith('relevance.models')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ CLI and demo agree

AGREEMENT_CASES = [
    (IMAGENET, spec) for spec in
    ("281", "999", "1000", "-3", "tabby cat", "TABBY", "crane", "Crane", "grass snake", "maillot", "tank suit",
     "Cardigan", "cardigan", "tabby kat", "cat", "qqqqqq", "  ")
] + [(SMALL, spec) for spec in ("crane", "tiger cat", "2", "7", "maillot", "taby cat")] + [
    (list(SHAPE_CLASSES), spec) for spec in ("star", "Star", "4", "6", "stra", "zebra")
]


@pytest.mark.parametrize("names, spec", AGREEMENT_CASES)
def test_cli_and_demo_give_the_same_answer(names, spec):
    pytest.importorskip("gradio")
    from demos.app_common import DemoError, match_class_name

    try:
        expected: int | str = resolve_class(spec, names)
    except ClassSpecError as error:
        expected = str(error)
    try:
        cli: int | str = resolve_target(spec, names, len(names))
    except UsageError as error:
        cli = re.sub(r"^--target: ", "", str(error))
    try:
        demo: int | str = match_class_name(names, spec)
    except DemoError as error:
        message = str(error)  # the same text as a sentence: capital first letter, final period
        demo = message[:1].lower() + message[1:-1] if message.endswith(".") else message[:1].lower() + message[1:]
    assert cli == demo == expected


def test_crane_is_an_error_in_both_with_the_same_candidates():
    pytest.importorskip("gradio")
    from demos.app_common import DemoError, match_class_name

    with pytest.raises(UsageError, match=r"^--target: 'crane' is ambiguous: it names classes 134 \(crane\), 517"):
        resolve_target("crane", IMAGENET, 1000)
    with pytest.raises(DemoError, match=r"^'crane' is ambiguous: it names classes 134 \(crane\), 517 \(crane\); "
                                        r"give the index\.$"):
        match_class_name(IMAGENET, "crane")
