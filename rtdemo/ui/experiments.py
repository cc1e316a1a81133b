"""The experiment picker above the tabs: list, create (from the Task tab's choice), select.

An experiment is created with a snapshot of its task's train and test questions, so that later
steps (generation, training, evaluation) all see the same questions after a reload or a restart.
Its config keeps the source flags (`source_argv`), the same ones `rtdemo generate` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.tasks import TASKS, SourceOptions, load_examples, pick_source
from rtdemo.tasks.synthetic import SyntheticSettings
from rtdemo.tasks.types import AnswerFormat
from rtdemo.ui.session import AppContext, check_owner, keep_upload

AUTO = "first available"


@dataclass(frozen=True)
class TaskChoice:
    """What the Task tab describes: a task and where its questions come from."""

    key: str
    source: str = AUTO
    seed: int = 0
    size: int = 500
    length: int = 4
    file: str | None = None
    question_column: str = "question"
    answer_column: str = "answer"
    answer_type: str = ""  # "" = the task's own
    limit: int = 0  # at most this many questions per split; 0 = all

    def source_argv(self, file: Path | None = None) -> list[str]:
        """The `rtdemo generate` source flags for this choice (`file`: the kept upload)."""
        argv = [] if self.source == AUTO else ["--source", self.source]
        if self.source == "synthetic" or (self.source == AUTO and not file):
            argv += ["--seed", str(self.seed), "--size", str(self.size)]
            argv += ["--length", str(self.length)]
        if file:
            argv += ["--file", str(file), "--question-column", self.question_column]
            argv += ["--answer-column", self.answer_column]
            if self.answer_type:
                argv += ["--answer-type", self.answer_type]
        return argv

    def options(self, file: Path | None) -> SourceOptions:
        """The `SourceOptions` of this choice."""
        answer = AnswerFormat(self.answer_type) if self.answer_type else None
        return SourceOptions(
            file=file,
            question_column=self.question_column or "question",
            answer_column=self.answer_column or "answer",
            answer=answer,
            synthetic=SyntheticSettings(seed=self.seed, size=self.size, length=self.length),
        )


def experiment_names(ctx: AppContext, owner: str | None) -> list[str]:
    """The owner's experiments, by name (none before the page knows its owner)."""
    if not owner:
        return []
    with ctx.store() as store:
        return [e.name for e in store.list_experiments(owner)]


def _load_split(choice: TaskChoice, split: str, file: Path | None) -> list:
    source = None if choice.source == AUTO else choice.source
    try:
        examples = load_examples(choice.key, split, source, choice.options(file))
    except UserError as err:
        if split == "test" and "split" in str(err).lower():
            return []  # a user file with train rows only: evaluation needs a test split later
        raise
    return examples[: choice.limit] if choice.limit > 0 else examples


def create_experiment(ctx: AppContext, owner: str | None, name: str, choice: TaskChoice) -> str:
    """Create the owner's experiment `name` with a snapshot of its questions; a status line."""
    owner = check_owner(owner)
    name = (name or "").strip()
    if not name:
        raise UserError("type a name for the new experiment (letters, digits, - _ .)")
    if choice.key not in TASKS:
        raise UserError(f"unknown task {choice.key!r}: pick one in the Task tab")
    if choice.source == "file" and not choice.file:
        raise UserError("the source is 'file': upload your file in the Task tab first")
    with ctx.store() as store:
        if name in {e.name for e in store.list_experiments(owner)}:
            raise UserError(f"you already have an experiment named {name!r}: pick another name")
    file = keep_upload(ctx, owner, choice.file) if choice.file else None
    train = _load_split(choice, "train", file)
    test = _load_split(choice, "test", file)
    ctx.quotas.check_questions(owner, max(len(train), len(test)))
    # The source actually used ("first available" resolved): the paper's figures compare only with
    # an experiment on the paper's own files (rtdemo.evaluation.results.paper_source).
    source = choice.source
    if source == AUTO:
        source = pick_source(TASKS[choice.key], choice.options(file).resolved(), "train")
    config = {"source": source, "source_argv": choice.source_argv(file)}
    with ctx.store() as store:
        exp = store.create_experiment(name, choice.key, owner=owner, config=config)
        store.add_questions(exp.id, train + test)
    return (
        f"Created **{exp.name}** ({TASKS[exp.task].name}): {len(train)} train and {len(test)} "
        "test questions. Next: the Teacher tab."
    )


def describe_experiment(ctx: AppContext, owner: str | None, name: str | None) -> str:
    """One line about the selected experiment (task, question counts, jobs running)."""
    if not owner or not name:
        return "No experiment selected: choose a task in the Task tab, name it, press **Create**."
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, name)
        train = store.count_questions(exp.id, "train")
        test = store.count_questions(exp.id, "test")
        running = [j for j in ctx.active_jobs(store, owner) if j.experiment_id == exp.id]
    line = f"**{exp.name}** · {TASKS[exp.task].name} · {train} train / {test} test questions"
    if running:
        line += " · " + ", ".join(f"{j.kind} job {j.id} {j.status}" for j in running)
    return line
