"""Diversity of a teacher's rationales: how many distinct ones each question got.

Diverse reasoning (METHOD.md) draws D rationales per question at a temperature T > 0; it helps
only if they differ. Some servers quietly do not sample: `transformers serve` decodes greedily,
whatever `temperature` says, when the model's generation config does not set `do_sample` (as
SmolLM2's does not), and it answers one choice whatever `n` says, so the teacher asks again and
gets the same text. D "diverse" samples are then one rationale D times. The local `hf` teacher
samples for real at T > 0.

Rationales are compared after whitespace normalisation (runs of white space as one space, ends
stripped): "A  b\\n" and "A b" are one rationale. A question's samples are compared within one
teacher setting (teacher, server, model, temperature, token cap); the per-question count of
distinct rationales is over all of the question's rationales, whatever setting wrote them (what
a student may train on).

    d = diversity(load_samples(store, experiment.id, split="train"))
    d.per_question[("train", 3)]   # distinct rationales of question 3
    d.describe()   # "1.00 distinct rationales per question (1) over 5 questions; 5 of 5 ..."
    d.warning()                    # None, or why every sample at T > 0 came back the same
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class _Rationale(Protocol):
    """What diversity reads of a stored sample (`rtdemo.generation.samples.Sample` has it)."""

    split: str
    idx: int
    teacher: str
    base_url: str
    model: str
    temperature: float
    max_tokens: int
    rationale: str | None


def normalize(text: str | None) -> str:
    """A rationale as compared: white space runs as one space, the ends stripped."""
    return " ".join((text or "").split())


@dataclass(frozen=True)
class Diversity:
    """Distinct rationales per question, and how many questions sampled at T > 0 came back with
    all their samples identical."""

    #: (split, question index) -> distinct rationales it has (questions with none are left out)
    per_question: dict[tuple[str, int], int] = field(default_factory=dict)
    #: questions with 2 or more rationales from one teacher setting at temperature > 0
    sampled: int = 0
    #: of those, questions whose rationales are all the same within each such setting
    identical: int = 0
    #: how many samples those questions have from one setting (the D to quote), ascending
    sample_counts: tuple[int, ...] = ()
    #: the temperatures of those settings, ascending
    temperatures: tuple[float, ...] = ()

    @property
    def questions(self) -> int:
        """Questions with at least one rationale."""
        return len(self.per_question)

    @property
    def mean_distinct(self) -> float | None:
        """Distinct rationales per question on average (None: no rationale yet)."""
        if not self.per_question:
            return None
        return sum(self.per_question.values()) / len(self.per_question)

    def describe(self) -> str:
        """One line for people: distinct rationales per question, and identical ones if any."""
        if not self.per_question:
            return "no rationales yet"
        counts = self.per_question.values()
        low, high = min(counts), max(counts)
        spread = f"{low}" if low == high else f"{low} to {high}"
        text = (
            f"{self.mean_distinct:.2f} distinct rationales per question ({spread}) over "
            f"{self.questions} question{'s' * (self.questions != 1)}"
        )
        if self.sampled:
            text += (
                f"; {self.identical} of {self.sampled} questions sampled at temperature > 0 "
                "got identical samples"
            )
        return text

    def warning(self) -> str | None:
        """Why diverse reasoning got nothing from this teacher, or None.

        Said when every question that has 2 or more samples at temperature > 0 from one
        teacher setting got them all identical: a real sampler at T > 0 almost never does that
        for every question. Some identical questions among varied ones are not warned about (a
        short or near-certain rationale can come out the same twice); `describe` counts them.
        """
        if not self.sampled or self.identical < self.sampled:
            return None
        temps = " and ".join(f"{t:g}" for t in self.temperatures)
        counts = self.sample_counts
        what = f"all {counts[0]}" if len(counts) == 1 else f"all {counts[0]} to {counts[-1]}"
        where = f"question{'s' * (self.sampled != 1)}"
        return (
            f"{what} samples of {self.sampled} {where} at temperature {temps} are identical: "
            "the teacher may ignore `temperature` or `n` (`transformers serve`, for one, "
            "decodes greedily unless the model's generation config samples, and answers one "
            "choice per request), so the diverse samples are one rationale repeated. Use a "
            "teacher that samples (the local hf teacher does at T > 0), or D = 1."
        )


class DiversityTally:
    """Diversity counted one rationale at a time (what a generation run reports as it goes);
    `result()` is the `Diversity` of everything added, `progress()` its figures in O(1)."""

    def __init__(self) -> None:
        self._texts: dict[tuple[str, int], set[str]] = defaultdict(set)
        # (split, idx) -> setting -> its texts, for settings at temperature > 0
        self._settings: dict[tuple[str, int], dict[tuple, list[str]]] = defaultdict(dict)
        self._distinct = 0  # the sum of the per-question counts
        self._sampled: set[tuple[str, int]] = set()
        self._identical: set[tuple[str, int]] = set()

    def add(self, sample: _Rationale) -> None:
        """Count one stored sample's rationale (none: ignored)."""
        if sample.rationale is None:
            return
        s = sample
        setting = (s.teacher, s.base_url, s.model, float(s.temperature), s.max_tokens)
        self.add_text((s.split, s.idx), setting, s.rationale)

    def add_text(self, question: tuple[str, int], setting: tuple, text: str) -> None:
        """Count one rationale of `question` (split, index) written at `setting` (teacher, base
        URL, model, temperature, max tokens)."""
        text = normalize(text)
        texts = self._texts[question]
        if text not in texts:
            texts.add(text)
            self._distinct += 1
        if setting[3] <= 0:
            return
        self._settings[question].setdefault(setting, []).append(text)
        groups = [g for g in self._settings[question].values() if len(g) >= 2]
        if groups:
            self._sampled.add(question)
            if all(len(set(g)) == 1 for g in groups):
                self._identical.add(question)
            else:
                self._identical.discard(question)

    def result(self) -> Diversity:
        """The `Diversity` of every rationale added so far."""
        groups = [
            (setting, texts)
            for question in self._sampled
            for setting, texts in self._settings[question].items()
            if len(texts) >= 2
        ]
        return Diversity(
            per_question={q: len(texts) for q, texts in self._texts.items() if texts},
            sampled=len(self._sampled),
            identical=len(self._identical),
            sample_counts=tuple(sorted({len(texts) for _, texts in groups})),
            temperatures=tuple(sorted({setting[3] for setting, _ in groups})),
        )

    def progress(self) -> dict[str, float | int | None]:
        """The figures a progress record carries: distinct rationales per question on average,
        questions sampled at T > 0 (2 or more samples) and how many of those are identical."""
        questions = len(self._texts)
        return {
            "distinct_per_question": round(self._distinct / questions, 2) if questions else None,
            "sampled_questions": len(self._sampled),
            "identical_questions": len(self._identical),
        }


def diversity(samples: Iterable[_Rationale]) -> Diversity:
    """The diversity of the rationales of `samples` (those without one are ignored)."""
    tally = DiversityTally()
    for sample in samples:
        tally.add(sample)
    return tally.result()
