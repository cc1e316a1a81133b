"""`rtdemo generate` and `rtdemo estimate`: step 1 of Fine-tune-CoT, reasoning generation.

    rtdemo generate --task coin_flip --limit 50 --teacher builtin --samples 4 --temperature 0.7 \\
        --experiment demo
    OPENAI_API_KEY=... rtdemo generate --task gsm8k --teacher openai --model gpt-4o-mini \\
        --budget 2 --experiment gsm8k-mini --background
    rtdemo estimate --task gsm8k --teacher openai --model gpt-4o-mini --experiment gsm8k-mini

The flags, the key and the teacher they build are in `rtdemo.cli.teacher_args`; a key is
never a flag (it comes from `OPENAI_API_KEY`, or the app's user), so it never reaches shell history,
job records or logs. Step 2's output, the curated set as JSONL, is `rtdemo export`
(`rtdemo.cli.export`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rtdemo.cli.teacher_args import (
    KEY_ENV,
    add_question_flags,
    add_teacher_flags,
    api_key_of,
    prepare_experiment,
    settings_of,
    teacher_of,
)
from rtdemo.curation.curate import question_yield
from rtdemo.errors import UserError
from rtdemo.generation.pricing import Estimate, Price, estimate, price_of, price_table
from rtdemo.generation.run import GenerationSettings, RunStats, run_generation
from rtdemo.generation.samples import SampleKey, load_samples
from rtdemo.tasks.types import Example
from rtdemo.teachers.base import Teacher
from rtdemo.workspace.store import Experiment, Store, workspace_path

INCOMPLETE = 3  # exit status when a run ended with samples still missing


def _plan_counts(
    store: Store, exp: Experiment, key: SampleKey, questions: list[Example], d: int
) -> tuple[list[int], list[int]]:
    stored = {(s.split, s.idx, s.sample_index): s.status for s in load_samples(store, exp.id, key)}
    missing, half = [], []
    for q in questions:
        states = [stored.get((q.split, q.index, i)) for i in range(d)]
        missing.append(sum(1 for st in states if st in (None, "failed")))
        half.append(sum(1 for st in states if st == "rationale"))
    return missing, half


def _estimate(
    store: Store,
    exp: Experiment,
    teacher: Teacher,
    settings: GenerationSettings,
    questions: list[Example],
    price: Price | None,
) -> Estimate:
    key = SampleKey.of(teacher.info, settings.temperature, settings.max_tokens)
    missing, half = _plan_counts(store, exp, key, questions, settings.samples)
    return estimate(
        [q.question for q in questions],
        missing,
        half,
        max_tokens=settings.max_tokens,
        supports_n=teacher.supports_n,
        price=price,
    )


def estimate_of(args: argparse.Namespace, *, need_key: bool = True) -> tuple[str, Estimate]:
    """The teacher's label and what the generation the flags describe would request and cost."""
    with Store(workspace_path(args.workspace)) as store:
        exp, questions, _ = prepare_experiment(store, args)
        teacher = teacher_of(args, exp.task, need_key=need_key)
        settings = settings_of(args)
        price = price_of(teacher.info, price_table(store.workspace, args.prices))
        est = _estimate(store, exp, teacher, settings, questions, price)
    return teacher.info.label or teacher.info.model, est


def cmd_estimate(args: argparse.Namespace) -> int:
    """Print what a generation would request and cost, without requesting anything."""
    label, est = estimate_of(args)
    print(f"teacher: {label}")
    print(est.describe())
    return 0


def _printer(start: float):
    last = [0.0]
    tty = sys.stderr.isatty()

    def show(stats: RunStats) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and stats.done + stats.failed < stats.total:
            return
        if not tty and now - last[0] < 5 and stats.done + stats.failed < stats.total:
            return  # a log file gets a line every few seconds, not a line per sample
        last[0] = now
        p = stats.progress()
        acc = "—" if p["accuracy"] is None else f"{p['accuracy']:.0%}"
        line = (
            f"{stats.done}/{stats.total} done, {stats.failed} failed, teacher accuracy {acc}, "
            f"spent ${stats.spend:.4f}, {now - start:.0f}s"
        )
        print(f"\r{line}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate rationales (in the foreground, in a background job, or as that job)."""
    if args.background:
        return _start_background(args)
    as_job = args.job_id is not None
    with Store(workspace_path(args.workspace)) as store:
        # A job uses the questions its starter snapshotted; it never reloads a source.
        exp, questions, answer = prepare_experiment(store, args, load=not as_job)
        teacher = teacher_of(args, exp.task)
        settings = settings_of(args)
        price = price_of(teacher.info, price_table(store.workspace, args.prices))
        if not as_job:
            print(f"teacher: {teacher.info.label or teacher.info.model}")
            print(_estimate(store, exp, teacher, settings, questions, price).describe())
            stats = run_generation(
                store,
                exp,
                teacher,
                settings,
                questions,
                answer,
                price,
                on_progress=_printer(time.monotonic()),
            )
            print(file=sys.stderr)
            return _summary(store, exp, stats, args)
        from rtdemo.jobs.context import job_context

        with job_context(store.workspace, args.job_id) as ctx:
            stats = run_generation(
                store,
                exp,
                teacher,
                settings,
                questions,
                answer,
                price,
                on_progress=_throttled(ctx.progress),
                should_stop=ctx.cancelled,
            )
            ctx.progress(**stats.progress())
            return _summary(store, exp, stats, args)


def _throttled(progress):
    last = [0.0]

    def write(stats: RunStats) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or stats.done + stats.failed >= stats.total:
            last[0] = now
            progress(**stats.progress())

    return write


def _summary(store: Store, exp: Experiment, stats: RunStats, args: argparse.Namespace) -> int:
    y = question_yield(store, exp, args.split)
    acc = "not measured" if stats.done == 0 else f"{stats.correct / stats.done:.1%}"
    print(
        f"experiment {exp.name}: {stats.done}/{stats.total} samples done, {stats.failed} "
        f"failed, {stats.truncated} truncated; teacher accuracy {acc}; this run made "
        f"{stats.requests} requests and spent ${stats.spend:.4f}"
    )
    print(
        f"{y['questions_with_a_correct_sample']} of {len(y['questions'])} questions have at "
        "least one correct rationale"
    )
    if stats.stopped == "budget":
        print(f"stopped at the budget of ${args.budget}: raise --budget and run again to continue")
    elif stats.stopped == "cancelled":
        print("cancelled: run again to continue where it stopped")
    if stats.failed:
        print(f"{stats.failed} samples failed (reasons stored): run again to retry them")
    return 0 if stats.done == stats.total else INCOMPLETE


PATH_FLAGS = ("--file", "--replay-file", "--prices", "--paper-data", "--hub-dir", "--workspace")


def _absolute_paths(argv: list[str]) -> list[str]:
    """argv with path values made absolute: a job may be resumed from another folder."""
    out = []
    for i, token in enumerate(argv):
        flag, eq, value = token.partition("=")
        if eq and flag in PATH_FLAGS:
            token = f"{flag}={Path(value).expanduser().resolve()}"
        elif i and argv[i - 1] in PATH_FLAGS:
            token = str(Path(token).expanduser().resolve())
        out.append(token)
    return out


def _start_background(args: argparse.Namespace) -> int:
    from rtdemo.jobs.runner import start_job

    with Store(workspace_path(args.workspace)) as store:
        exp, _, _ = prepare_experiment(store, args)  # snapshot questions before the job starts
        settings = settings_of(args)  # fail now, not in the background, on bad settings or teacher
        teacher = teacher_of(args, exp.task)
        if (
            settings.budget is not None
            and price_of(teacher.info, price_table(store.workspace, args.prices)) is None
        ):
            raise UserError(
                f"a budget needs a price for model {teacher.info.model!r}: add it to prices.yaml "
                "(or pass --prices FILE)"
            )
        argv = _absolute_paths([a for a in args.argv if a != "--background"])
        if args.workspace is None:
            argv += ["--workspace", str(store.workspace)]
        env_names = [KEY_ENV] if args.teacher == "openai" else []
        key = api_key_of(args)  # the app's user's own key, never the server's (see api_key_of)
        env = {KEY_ENV: key} if key and env_names else {}
        job = start_job(
            store,
            "generate",
            argv,
            owner=args.owner,
            experiment_id=exp.id,
            env=env,
            env_names=env_names,
        )
    args.started = job  # for callers in-process (the app)
    print(f"started job {job.id} (generate) — watch it: rtdemo jobs show {job.id}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add generate and estimate to the CLI."""
    for name, func, text in (
        ("generate", cmd_generate, "generate teacher rationales (two-step Zero-shot-CoT)"),
        ("estimate", cmd_estimate, "requests, tokens and cost of a generation; requests nothing"),
    ):
        p = commands.add_parser(name, help=text, description=text)
        add_question_flags(p)
        add_teacher_flags(p)
        if name == "generate":
            p.add_argument(
                "--background",
                action="store_true",
                help="run as a background job (rtdemo jobs show ID to watch it)",
            )
            p.add_argument("--job-id", type=int, help=argparse.SUPPRESS)
        p.set_defaults(func=func)
