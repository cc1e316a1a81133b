"""The flags shared by `rtdemo generate` and `rtdemo estimate`, and what they build.

Which experiment and questions (`add_question_flags`, `prepare_experiment`), which teacher
(`add_teacher_flags`, `spec_of` → `rtdemo.teachers.spec.build_teacher`) and how it samples
(`settings_of`). The pipeline and the app build their teachers with the same `build_teacher`.

Keys come from the environment (`OPENAI_API_KEY`) only: there is no flag for them, so they never
reach shell history, job records or logs. (The app never parses these flags: it builds a
`GenerationRequest` and hands the user's key to `generation_plan`.)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rtdemo.cli.common import add_source_flags, add_workspace_flag, source_options
from rtdemo.errors import UserError
from rtdemo.generation.run import GenerationSettings
from rtdemo.redaction import restore_url
from rtdemo.tasks import get_task, load_examples
from rtdemo.tasks.types import SPLITS, AnswerFormat, Example
from rtdemo.teachers.base import Teacher
from rtdemo.teachers.spec import KEY_ENV, TEACHERS, TeacherSpec, build_teacher
from rtdemo.validation import add_flags
from rtdemo.workspace.store import Experiment, Store

#: The `GenerationSettings` fields given as flags (`--max-tokens` ...), and the `TeacherSpec`
#: fields given as flags named as the field; `kind` is `--teacher`, `replay_files` is the
#: repeatable `--replay-file`.
SAMPLING_FLAGS = ("samples", "temperature", "max_tokens", "concurrency", "rpm", "budget")
SAMPLING_FLAGS += ("retry_deadline", "max_attempts")
SPEC_FLAGS = ("base_url", "model", "mode", "error_rate", "timeout")


def _help(cls: type, name: str) -> str:
    return cls.__dataclass_fields__[name].metadata["help"]


def add_teacher_flags(p: argparse.ArgumentParser) -> None:
    """Flags that choose and configure a teacher and its sampling: type, range, choices and help
    come from `TeacherSpec` and `GenerationSettings` (`rtdemo.validation.add_flags`)."""
    g = p.add_argument_group("teacher")
    g.add_argument(
        "--teacher", choices=TEACHERS, default="builtin", help=_help(TeacherSpec, "kind")
    )
    add_flags(g, TeacherSpec, SPEC_FLAGS[:3])
    g.add_argument(
        "--replay-file",
        action="append",
        type=Path,
        default=[],
        help=_help(TeacherSpec, "replay_files"),
    )
    add_flags(g, TeacherSpec, SPEC_FLAGS[3:])
    s = p.add_argument_group("sampling and cost")
    add_flags(s, GenerationSettings, SAMPLING_FLAGS)
    s.add_argument(
        "--prices",
        type=Path,
        help="your price table (YAML: model: {input, output} USD per million tokens)",
    )


def add_question_flags(p: argparse.ArgumentParser) -> None:
    """Flags that choose the experiment and its questions."""
    p.add_argument("--task", help="task key (needed when the experiment is new)")
    p.add_argument("--split", choices=SPLITS, default="train", help="split (default train)")
    p.add_argument("--limit", type=int, help="the first N questions of the split")
    p.add_argument("--experiment", required=True, help="experiment name (created if new)")
    add_workspace_flag(p)
    p.add_argument("--owner", default="local", help=argparse.SUPPRESS)
    p.add_argument(
        "--stored-questions",
        action="store_true",
        help="use only the questions the (existing) experiment already holds; no source is "
        "loaded, source flags only say how answers are read",
    )
    add_source_flags(p)


def api_key_of(args: argparse.Namespace) -> str | None:
    """The API key for this command: `$OPENAI_API_KEY` (there is no flag for it)."""
    return os.environ.get(KEY_ENV) or None


def spec_of(args: argparse.Namespace) -> TeacherSpec:
    """The teacher the flags describe. A redacted `--base-url` (a job's command line) gets its
    credentials back from `$RTDEMO_TEACHER_BASE_URL` (`rtdemo.redaction.restore_url`)."""
    values = {name: getattr(args, name) for name in SPEC_FLAGS}
    values["base_url"] = restore_url(values["base_url"])
    return TeacherSpec(kind=args.teacher, replay_files=tuple(args.replay_file), **values)


def teacher_of(args: argparse.Namespace, task: str, *, need_key: bool = True) -> Teacher:
    """The teacher the flags describe, with the key of `api_key_of`."""
    return build_teacher(spec_of(args), task, api_key=api_key_of(args), need_key=need_key)


def settings_of(args: argparse.Namespace) -> GenerationSettings:
    """The sampling settings the flags describe (validated)."""
    return GenerationSettings(**{name: getattr(args, name) for name in SAMPLING_FLAGS})


def prepare_experiment(
    store: Store, args: argparse.Namespace, *, load: bool = True
) -> tuple[Experiment, list[Example], AnswerFormat]:
    """Find or create the experiment, snapshot its questions, return the ones to generate for."""
    options = source_options(args)
    existing = {e.name: e for e in store.list_experiments(args.owner)}
    exp = existing.get(args.experiment)
    if getattr(args, "stored_questions", False):
        if exp is None:
            raise UserError(
                f"there is no experiment {args.experiment!r}: --stored-questions uses the "
                "questions of an existing experiment (create it first, or give --task)"
            )
        load = False  # a source reloaded now could add or change questions
    if exp is None and not args.task:
        raise UserError(f"experiment {args.experiment!r} is new: say which --task")
    if exp is not None and args.task and args.task != exp.task:
        raise UserError(f"experiment {exp.name} is for task {exp.task}, not {args.task}")
    task_key = exp.task if exp is not None else get_task(args.task).key
    if load:  # before creating anything: a source that fails leaves no empty experiment behind
        examples = load_examples(task_key, args.split, args.source, options)
        examples = examples[: args.limit] if args.limit is not None else examples
    if exp is None:
        exp = store.create_experiment(
            args.experiment, task_key, owner=args.owner, config={"source": args.source}
        )
    if load:
        store.add_questions(exp.id, examples)
    questions = store.questions(exp.id, args.split)
    if args.limit is not None:
        questions = questions[: args.limit]
    if not questions:
        raise UserError(f"experiment {exp.name} has no {args.split} questions")
    return exp, questions, options.answer or get_task(exp.task).answer
