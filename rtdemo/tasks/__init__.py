"""Reasoning tasks: the registry of the paper's twelve, their four sources, answer cleansing.

    from rtdemo.tasks import get_task, load_examples, SourceOptions
    examples = load_examples("coin_flip", "train", options=SourceOptions())

Sources, in the order they are tried when none is named: a user `file` (when one is given), the
`paper` files, the `synthetic` generator, the `hub`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.tasks.hub import hub_dir, hub_status, load_hub
from rtdemo.tasks.paper import load_paper, paper_data_dir, paper_status
from rtdemo.tasks.registry import TASKS, get_task
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.tasks.types import SOURCES, SPLITS, AnswerFormat, Example, TaskSpec
from rtdemo.tasks.userfile import load_user_file

__all__ = [
    "TASKS",
    "AnswerFormat",
    "Example",
    "SourceOptions",
    "TaskSpec",
    "get_task",
    "load_examples",
    "pick_source",
    "source_status",
]


@dataclass(frozen=True)
class SourceOptions:
    """Where task data may come from: folders, a user file and its mapping, synthetic settings."""

    paper_data: Path | None = None  # default: $RTDEMO_PAPER_DATA
    hub_dir: Path | None = None  # default: $RTDEMO_HUB_DIR
    file: Path | None = None
    question_column: str = "question"
    answer_column: str = "answer"
    answer: AnswerFormat | None = None  # a user file's answer type; default: the task's
    max_rows: int | None = None  # a user file with more rows is refused (`TooManyRows`)
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)

    def resolved(self) -> SourceOptions:
        """These options with the environment's defaults filled in."""
        return replace(
            self, paper_data=paper_data_dir(self.paper_data), hub_dir=hub_dir(self.hub_dir)
        )


def source_status(
    task: TaskSpec, options: SourceOptions, split: str | None = None
) -> dict[str, tuple[bool, str]]:
    """For each source of `task`: whether it is available here and why (not)."""
    options = options.resolved()
    status = {
        "paper": paper_status(task, options.paper_data, split),
        "hub": hub_status(task, options.hub_dir),
        "synthetic": (True, "generated locally")
        if task.synthetic
        else (False, f"{task.name} has no synthetic generator"),
        "file": (True, f"user file {options.file}")
        if options.file
        else (False, "no file given (upload one, or pass --file)"),
    }
    return status


def pick_source(task: TaskSpec, options: SourceOptions, split: str) -> str:
    """The first available source, in the order file, paper, synthetic, hub."""
    status = source_status(task, options, split)
    for name in ("file", "paper", "synthetic", "hub"):
        if status[name][0]:
            return name
    why = "; ".join(f"{name}: {status[name][1]}" for name in ("paper", "hub"))
    raise UserError(f"no source of {task.name} ({split}) is available here — {why}")


def load_examples(
    key: str,
    split: str,
    source: str | None = None,
    options: SourceOptions | None = None,
    limit: int | None = None,
) -> list[Example]:
    """The `split` of task `key` from `source` (or the first available one).

    `limit`: the first `limit` questions only; the synthetic source then generates no more than
    it needs (the other sources read their whole file, bounded by its size)."""
    task = get_task(key)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if source is not None and source not in SOURCES:
        raise UserError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    if limit is not None and limit < 0:
        raise UserError(f"the number of questions to take must be 0 or more, not {limit}")
    options = (options or SourceOptions()).resolved()
    source = source or pick_source(task, options, split)
    if source == "synthetic":
        return generate(task.key, options.synthetic, split, limit)
    return _load(task, split, source, options)[:limit]


def _load(task: TaskSpec, split: str, source: str, options: SourceOptions) -> list[Example]:
    if source == "paper":
        return load_paper(task, options.paper_data, split)
    if source == "hub":
        return load_hub(task, split, options.hub_dir, options.paper_data)
    if options.file is None:
        raise UserError("the file source needs a file (--file PATH)")
    examples = load_user_file(
        options.file,
        options.answer or task.answer,
        question_column=options.question_column,
        answer_column=options.answer_column,
        max_rows=options.max_rows,
    )
    return [e for e in examples if e.split == split]
