"""The vocabulary of the task registry: answer types, examples and task specifications."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AnswerType = Literal["number", "letter", "yes_no", "text"]
ANSWER_TYPES: tuple[str, ...] = ("number", "letter", "yes_no", "text")
Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")
SourceName = Literal["paper", "hub", "synthetic", "file"]
SOURCES: tuple[str, ...] = ("paper", "hub", "synthetic", "file")


@dataclass(frozen=True)
class Example:
    """One question of a task with its gold answer, as the source gives it (not yet cleansed).

    `index` is the position in the source (the paper's sample index for paper files), so that a
    question keeps its identity across runs.
    """

    question: str
    answer: str
    split: str
    index: int


@dataclass(frozen=True)
class AnswerFormat:
    """How answers of a task are read: the answer type and, for multiple choice, the letters."""

    answer_type: AnswerType
    letters: str = ""  # allowed choice letters, e.g. "ABCDE"; only for answer_type == "letter"

    def __post_init__(self) -> None:
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"unknown answer type {self.answer_type!r}; use one of {ANSWER_TYPES}")
        if self.answer_type == "letter" and not (self.letters.isalpha() and self.letters.isupper()):
            raise ValueError("a letter answer type needs its choice letters, e.g. 'ABCDE'")


@dataclass(frozen=True)
class HubSource:
    """Where a task lives on the Hugging Face Hub and how its rows become examples.

    `adapter` names a row converter in `rtdemo.tasks.hub` (plain columns, GSM8K's '####' answers,
    AQUA's option list, CommonsenseQA's choice dict, BIG-bench multiple choice...).
    """

    dataset_id: str
    config: str | None
    splits: dict[str, str]  # our split -> the Hub dataset's split
    adapter: str
    question_column: str = "question"
    answer_column: str = "answer"


@dataclass(frozen=True)
class TaskSpec:
    """One of the paper's twelve tasks."""

    key: str
    name: str
    answer: AnswerFormat
    paper_sizes: dict[str, int]  # the paper's train/test split sizes
    hub: HubSource | None = None
    synthetic: bool = False
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def answer_type(self) -> AnswerType:
        return self.answer.answer_type
