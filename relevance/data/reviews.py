"""A text world where the truth is known: procedural film reviews whose label depends on phrases at known places.

Each review is a few short sentences, lowercase, with words and punctuation separated by spaces (so whitespace
words are the words a word-piece tokenizer sees). Its label (0 = negative, 1 = positive) is the reviewer's verdict
on the film, decided by opinion phrases about the film's parts (``the acting was not really great``); those
phrases' opinion words are the review's **rationale**, the words a faithful explanation should point at, as the
human rationales of ERASER Movie Reviews (DeYoung et al., ACL 2020) are for real reviews.

What makes it more than keyword spotting:

* **negation**: ``not`` before an opinion word flips it (``the plot was not dull`` is positive);
* **intensifiers** (``really``, ``truly``, ...) change nothing;
* **contrast**: in ``X , but Y``, the clause after ``but`` decides the verdict, the one before is not part of it;
* **distractors**: opinions about other things (``the popcorn was awful``) carry sentiment words but do not count;
* **filler**: neutral sentences (``we went on a sunday .``).

Rules for the label: without contrast, every opinion about the film has the same polarity, the label; with
contrast, only the clause after ``but`` has the label's polarity (the one before has the opposite). The rationale
is, for every deciding film clause, its opinion phrase: the negation (if any), the intensifier (if any) and the
opinion word. A sample is a deterministic function of ``(seed, index)``: the same sample comes back whatever
``count`` is asked for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

LABELS = ("negative", "positive")

POSITIVE = ("great", "wonderful", "superb", "brilliant", "moving", "delightful", "gripping", "charming")
NEGATIVE = ("awful", "dull", "terrible", "boring", "clumsy", "weak", "tedious", "bland")
INTENSIFIERS = ("really", "truly", "very", "absolutely")
FILM_PARTS = ("the acting", "the plot", "the script", "the music", "the ending", "the cast", "the dialogue",
              "the pacing", "the direction", "the story")
OTHER_THINGS = ("the popcorn", "the seats", "the parking", "the weather", "the cinema", "the trailer before it",
                "the ticket price", "the bus ride home")
VERBS = ("was", "felt", "seemed")
FILLER = ("we went on a sunday .", "i saw it with my brother .", "it runs about two hours .",
          "the film is in colour .", "i had read about it last year .", "it opened in march .",
          "my friend picked the film .", "we sat near the back .")
#: Every word the world can produce (for building a tokenizer's vocabulary).
PUNCTUATION = (".", ",")


@dataclass(frozen=True)
class ReviewSample:
    """One review.

    Attributes
    ----------
    text:
        The review, words and punctuation separated by single spaces.
    label:
        0 (negative) or 1 (positive).
    rationale:
        Indices into :attr:`words` of the words that decide the label.
    kind:
        ``"plain"``, ``"negation"`` (a deciding clause is negated) or ``"contrast"`` (``... , but ...``);
        ``"negation+contrast"`` when both.
    index, seed:
        Where the sample comes from (``generate_reviews(seed=...)[index]``).
    """

    text: str
    label: int
    rationale: tuple[int, ...]
    kind: str
    index: int = 0
    seed: int = 0
    clauses: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    @property
    def words(self) -> list[str]:
        return self.text.split(" ")

    @property
    def rationale_words(self) -> list[str]:
        words = self.words
        return [words[i] for i in self.rationale]


def vocabulary() -> list[str]:
    """Every word a review can contain, sorted."""
    words = set(PUNCTUATION) | {"but", "not", "and"}
    for group in (POSITIVE, NEGATIVE, INTENSIFIERS, VERBS):
        words.update(group)
    for group in (FILM_PARTS, OTHER_THINGS, FILLER):
        for phrase in group:
            words.update(phrase.split())
    return sorted(words)


class _Writer:
    """Accumulates words and remembers which ones form the rationale."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.rationale: list[int] = []

    def add(self, phrase: str) -> None:
        self.words.extend(phrase.split())

    def opinion(self, rng: random.Random, subject: str, positive: bool, negated: bool, deciding: bool) -> None:
        """``subject verb [not] [intensifier] word``: ``positive`` is the clause's polarity after negation."""
        self.add(subject)
        self.add(rng.choice(VERBS))
        start = len(self.words)
        if negated:
            self.add("not")
        if rng.random() < 0.35:
            self.add(rng.choice(INTENSIFIERS))
        word_positive = positive != negated
        self.add(rng.choice(POSITIVE if word_positive else NEGATIVE))
        if deciding:
            self.rationale.extend(range(start, len(self.words)))


def _sample(seed: int, index: int) -> ReviewSample:
    rng = random.Random(f"reviews/{seed}/{index}")
    label = rng.randrange(2)
    contrast = rng.random() < 0.3
    negation_rate = 0.3
    writer = _Writer()
    parts = rng.sample(FILM_PARTS, 3)
    sentences: list[callable] = []

    def filler() -> None:
        writer.add(rng.choice(FILLER))

    def distractor() -> None:
        writer.opinion(rng, rng.choice(OTHER_THINGS), rng.random() < 0.5, rng.random() < negation_rate,
                       deciding=False)
        writer.add(".")

    negated_any = False

    def film_opinion() -> None:
        nonlocal negated_any
        if contrast:
            negated = rng.random() < negation_rate
            writer.opinion(rng, parts[0], not label, rng.random() < negation_rate, deciding=False)
            writer.add(", but")
            writer.opinion(rng, parts[1], bool(label), negated, deciding=True)
            negated_any |= negated
        else:
            for part in parts[:rng.choice((1, 2))]:
                negated = rng.random() < negation_rate
                if writer.words and writer.words[-1] != ".":
                    writer.add("and")
                writer.opinion(rng, part, bool(label), negated, deciding=True)
                negated_any |= negated
        writer.add(".")

    sentences = [film_opinion] + [filler] * rng.choice((0, 1, 2)) + [distractor] * rng.choice((0, 1, 1, 2))
    rng.shuffle(sentences)
    for write in sentences:
        write()
    kind = "+".join(k for k, on in (("negation", negated_any), ("contrast", contrast)) if on) or "plain"
    return ReviewSample(text=" ".join(writer.words), label=label, rationale=tuple(writer.rationale), kind=kind,
                        index=index, seed=seed)


def generate_reviews(count: int, seed: int = 0, start: int = 0) -> list[ReviewSample]:
    """Reviews ``start .. start + count - 1`` of the world with this ``seed`` (deterministic, see the module)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [_sample(seed, index) for index in range(start, start + count)]


def polarity_of_clause(words: list[str]) -> int:
    """The polarity (1 positive, 0 negative) of one opinion clause's words, by the world's rules: the opinion
    word's polarity, flipped by ``not`` (for tests and for checking a sample's label independently)."""
    opinion = [w for w in words if w in POSITIVE or w in NEGATIVE]
    if len(opinion) != 1:
        raise ValueError(f"a clause has exactly one opinion word, got {opinion}")
    positive = opinion[0] in POSITIVE
    return int(positive != ("not" in words))
