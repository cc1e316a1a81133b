"""The experiment picker above the tabs: list, create (from the Task tab's choice), select.

An experiment is created with a snapshot of its task's train and test questions, so that later
steps (generation, training, evaluation) all see the same questions after a reload or a restart.
Its config keeps the source flags (`source_argv`), the same ones `rtdemo generate` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.hosting.quotas import owner_is_visitor
from rtdemo.tasks import TASKS, SourceOptions, load_examples, pick_source
from rtdemo.tasks.synthetic import SyntheticSettings, split_size
from rtdemo.tasks.types import SPLITS, AnswerFormat
from rtdemo.tasks.userfile import TooManyRows
from rtdemo.ui.session import AppContext, check_owner, kept_upload

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

    def options(self, file: Path | None, max_rows: int | None = None) -> SourceOptions:
        """The `SourceOptions` of this choice (`max_rows`: of a file, see `SourceOptions`)."""
        answer = AnswerFormat(self.answer_type) if self.answer_type else None
        return SourceOptions(
            file=file,
            question_column=self.question_column or "question",
            answer_column=self.answer_column or "answer",
            answer=answer,
            synthetic=SyntheticSettings(seed=self.seed, size=self.size, length=self.length),
            max_rows=max_rows,
        )


def experiment_names(ctx: AppContext, owner: str | None) -> list[str]:
    """The owner's experiments, by name (none before the page knows its owner)."""
    if not owner:
        return []
    with ctx.store() as store:
        return [e.name for e in store.list_experiments(owner)]


def _load_split(choice: TaskChoice, split: str, source: str, options: SourceOptions) -> list:
    limit = choice.limit if choice.limit > 0 else None
    try:
        return load_examples(choice.key, split, source, options, limit=limit)
    except TooManyRows as err:
        raise UserError(
            f"{err}, the most this app reads from a file of a visitor who is not logged in "
            "(twice the questions per split they may keep): keep a sample of the rows, log in "
            "with Hugging Face, or run the app on your own machine"
        ) from None
    except UserError as err:
        if split == "test" and "split" in str(err).lower():
            return []  # a user file with train rows only: evaluation needs a test split later
        raise


def planned_questions(choice: TaskChoice, sources: dict[str, str]) -> int | None:
    """The most questions per split the synthetic splits of a choice would snapshot, known
    before generating any (None when no split is synthetic: a file's rows are counted there)."""
    sizes = [split_size(choice.size, s) for s, source in sources.items() if source == "synthetic"]
    if not sizes:
        return None
    return max(min(n, choice.limit) if choice.limit > 0 else n for n in sizes)


def visitor_max_rows(ctx: AppContext, owner: str) -> int | None:
    """The most rows read from a visitor's file: twice the questions per split they may keep (a
    larger file has a larger split, or is cut down by a limit after all of it was read)."""
    cap = ctx.quotas.visitor_max_questions
    return 2 * cap if cap and owner_is_visitor(owner) else None


def create_experiment(ctx: AppContext, owner: str | None, name: str, choice: TaskChoice) -> str:
    """Create the owner's experiment `name` with a snapshot of its questions; a status line.

    Every check that needs no work comes first: the name, the task, the synthetic settings and
    the number of questions they make against the visitor cap (`planned_questions`), so a huge
    request is refused at once. The upload is kept (`kept_upload`: its size and the disk caps
    checked) only for a file source, and deleted again if the experiment is not created; a
    visitor's file is read up to twice the question cap in rows (`visitor_max_rows`).
    """
    owner = check_owner(owner)
    name = (name or "").strip()
    if not name:
        raise UserError("type a name for the new experiment (letters, digits, - _ .)")
    if choice.key not in TASKS:
        raise UserError(f"unknown task {choice.key!r}: pick one in the Task tab")
    if choice.source == "file" and not choice.file:
        raise UserError("the source is 'file': upload your file in the Task tab first")
    if choice.limit < 0:
        raise UserError(f"questions per split must be 0 (all) or more, not {choice.limit:,}")
    options = choice.options(Path(choice.file) if choice.file else None).resolved()  # checks
    # The sources actually used ("first available" resolved): the paper's figures compare only
    # with an experiment on the paper's own files (rtdemo.evaluation.results.paper_source).
    sources = {
        split: pick_source(TASKS[choice.key], options, split) if choice.source == AUTO
        else choice.source
        for split in SPLITS
    }  # fmt: skip
    planned = planned_questions(choice, sources)
    if planned is not None:
        ctx.quotas.check_questions(owner, planned, "pick a smaller size or questions per split")
    with ctx.store() as store:
        if name in {e.name for e in store.list_experiments(owner)}:
            raise UserError(f"you already have an experiment named {name!r}: pick another name")
    upload = choice.file if "file" in sources.values() else None
    with kept_upload(ctx, owner, upload) as file:
        kept = choice.options(file, visitor_max_rows(ctx, owner))
        train = _load_split(choice, "train", sources["train"], kept)
        test = _load_split(choice, "test", sources["test"], kept)
        ctx.quotas.check_questions(owner, max(len(train), len(test)))
        config = {"source": sources["train"], "source_argv": choice.source_argv(file)}
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
