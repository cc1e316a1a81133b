"""Answer cleansing and metrics: how an answer is read out of text, exactly as the paper does it.

Rule by rule from the reference evaluator (`../shared/docs/METHOD.md`, "Answer cleansing"), with one
documented difference: numbers compare numerically on every numeric task (the reference compared
GSM8K and MultiArith as strings, so "18.0" failed against "18").

Three output formats decide where the answer is looked for:

- ``teacher``: the teacher's answer text (call 2) — the first candidate in the whole text;
- ``vanilla``: a vanilla-baseline student's output (``" {a}"``) — the first candidate in the
  whole text;
- ``cot``: a Fine-tune-CoT student's output (``" {r} --> {a}"``) — the first candidate after the
  first ``-->`` if there is one, else the last candidate in the whole text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from rtdemo.tasks.types import AnswerFormat

OutputFormat = Literal["teacher", "vanilla", "cot"]
OUTPUT_FORMATS: tuple[str, ...] = ("teacher", "vanilla", "cot")
DELIMITER = "-->"
NUMERIC_TOLERANCE = 1e-6
# Finish reasons that mean "the model chose to stop" (OpenAI: "stop"; our own generation: "eos").
STOPPED = frozenset({"stop", "eos", "end_turn"})

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_YES_NO_SEPARATORS = re.compile(r"[\"'\n.\s:,]")
_TEXT_DELETIONS = re.compile(r"[\"'\n.\s]")


def candidates(text: str, answer: AnswerFormat) -> list[str]:
    """All answer candidates in `text`, in order, by the task's answer type."""
    kind = answer.answer_type
    if kind == "letter":
        # Crude on purpose: every upper-case letter in range, anywhere ("Based" yields "B").
        return [ch for ch in text if ch in answer.letters]
    if kind == "number":
        return _NUMBER.findall(text.replace(",", ""))
    if kind == "yes_no":
        tokens = _YES_NO_SEPARATORS.sub(" ", text.lower()).split(" ")
        return [t for t in tokens if t in ("yes", "no")]
    if kind == "text":
        whole = _TEXT_DELETIONS.sub("", text)
        return [whole] if whole else []
    raise ValueError(f"unknown answer type {kind!r}")


def cleanse_gold(gold: str, answer: AnswerFormat) -> str:
    """The gold answer as the comparison sees it: commas removed on numbers, yes/no lower-cased."""
    gold = str(gold).strip()
    if answer.answer_type == "number":
        return gold.replace(",", "")
    if answer.answer_type == "yes_no":
        return gold.lower()
    return gold


def same_answer(prediction: str, gold: str, answer: AnswerFormat) -> bool:
    """Whether a cleansed prediction equals a cleansed gold answer (numbers within 1e-6)."""
    if answer.answer_type == "number":
        try:
            return abs(float(prediction) - float(gold)) <= NUMERIC_TOLERANCE
        except ValueError:
            return False
    return prediction == gold


def chosen_text(output: str, fmt: OutputFormat) -> tuple[str, Literal["first", "last"]]:
    """The part of `output` the answer is read from, and which candidate of it counts."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; use one of {OUTPUT_FORMATS}")
    if fmt == "cot":
        if DELIMITER in output:
            return output.split(DELIMITER, 1)[1], "first"
        return output, "last"
    return output, "first"


@dataclass(frozen=True)
class Verdict:
    """How one output was judged.

    `complete` is None when the finish reason is unknown (e.g. `rtdemo score` input without it).
    """

    prediction: str | None
    correct: bool
    contains_answer: bool
    correct_format: bool
    complete: bool | None

    def to_dict(self) -> dict:
        """A plain dict, for JSON output."""
        return asdict(self)


def judge(
    output: str,
    gold: str,
    answer: AnswerFormat,
    fmt: OutputFormat,
    finish_reason: str | None = None,
) -> Verdict:
    """Read the answer out of `output` by the paper's rules and compare it to `gold`."""
    output = output or ""
    text, which = chosen_text(output, fmt)
    found = candidates(text, answer)
    prediction = (found[0] if which == "first" else found[-1]) if found else None
    gold_clean = cleanse_gold(gold, answer)
    return Verdict(
        prediction=prediction,
        correct=prediction is not None and same_answer(prediction, gold_clean, answer),
        contains_answer=any(same_answer(c, gold_clean, answer) for c in found),
        correct_format=(DELIMITER in output) if fmt == "cot" else True,
        complete=None if finish_reason is None else finish_reason in STOPPED,
    )


@dataclass(frozen=True)
class Metrics:
    """The paper's four metrics over a set of outputs, as fractions in [0, 1].

    `complete` averages only the outputs whose finish reason is known; None if none is.
    """

    count: int
    accuracy: float
    contains_answer: float
    correct_format: float
    complete: float | None

    def to_dict(self) -> dict:
        """A plain dict, for JSON output."""
        return asdict(self)


def metrics(verdicts: Sequence[Verdict] | Iterable[Verdict]) -> Metrics:
    """Aggregate verdicts into accuracy, contains-answer, correct-format and complete."""
    verdicts = list(verdicts)
    n = len(verdicts)
    if n == 0:
        return Metrics(0, 0.0, 0.0, 0.0, None)
    known = [v.complete for v in verdicts if v.complete is not None]
    return Metrics(
        count=n,
        accuracy=sum(v.correct for v in verdicts) / n,
        contains_answer=sum(v.contains_answer for v in verdicts) / n,
        correct_format=sum(v.correct_format for v in verdicts) / n,
        complete=(sum(known) / len(known)) if known else None,
    )
