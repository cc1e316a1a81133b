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

from rtdemo.cli.teacher_args import (
    add_question_flags,
    add_teacher_flags,
    api_key_of,
    prepare_experiment,
    settings_of,
    spec_of,
    teacher_of,
)
from rtdemo.curation.curate import question_yield
from rtdemo.generation.pricing import Estimate, price_of, price_table
from rtdemo.generation.request import (
    GenerationRequest,
    estimate_generation,
    generation_plan,
    plan_estimate,
)
from rtdemo.generation.run import RunStats, run_generation
from rtdemo.hosting.credentials import with_own_hub_token
from rtdemo.jobs.context import job_context
from rtdemo.jobs.plan import start_plan
from rtdemo.jobs.progress import Throttle, is_last, progress_printer
from rtdemo.workspace.store import Experiment, Store, workspace_path

INCOMPLETE = 3  # exit status when a run ended with samples still missing


def estimate_of(args: argparse.Namespace) -> tuple[str, Estimate]:
    """The teacher's label and what the generation the flags describe would request and cost."""
    settings = settings_of(args)  # bad settings: refused before an experiment is created
    with Store(workspace_path(args.workspace)) as store:
        exp, questions, _ = prepare_experiment(store, args)
        return estimate_generation(store, exp, questions, spec_of(args), settings, args.prices)


def cmd_estimate(args: argparse.Namespace) -> int:
    """Print what a generation would request and cost, without requesting anything."""
    label, est = estimate_of(args)
    print(f"teacher: {label}")
    print(est.describe())
    return 0


def _printer():
    """Generation's `on_progress` for the terminal: on a terminal one line rewritten in place
    (at most twice a second), into a log file a line every 5 s; the last record always."""
    tty = sys.stderr.isatty()

    def write(line: str) -> None:
        print(f"\r{line}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    show = progress_printer(write, 0.5 if tty else 5.0)
    return lambda stats: show(stats.progress())


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate rationales (in the foreground, in a background job, or as that job)."""
    if args.background:
        return _start_background(args)
    as_job = args.job_id is not None
    settings = settings_of(args)  # bad settings: refused before an experiment is created
    with Store(workspace_path(args.workspace)) as store:
        # A job uses the questions its starter snapshotted; it never reloads a source.
        exp, questions, answer = prepare_experiment(store, args, load=not as_job)
        teacher = teacher_of(args, exp.task)
        price = price_of(teacher.info, price_table(store.workspace, args.prices))
        if not as_job:
            print(f"teacher: {teacher.info.label or teacher.info.model}")
            print(plan_estimate(store, exp, teacher, settings, questions, price).describe())
        with job_context(store.workspace, args.job_id) as ctx:  # a no-op in the foreground
            stats = run_generation(
                store,
                exp,
                teacher,
                settings,
                questions,
                answer,
                price,
                on_progress=_throttled(ctx.progress) if as_job else _printer(),
                should_stop=ctx.cancelled,
            )
            if as_job:
                ctx.progress(**stats.progress())
            else:
                print(file=sys.stderr)
            return _summary(store, exp, stats, args)


def _throttled(progress):
    """Generation's `on_progress` for a job: a record to its progress file at most twice a
    second, and the last one always."""
    throttle = Throttle(0.5)

    def write(stats: RunStats) -> None:
        record = stats.progress()
        if throttle(is_last(record)):
            progress(**record)

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
    spread = stats.diversity.result()  # this teacher setting's samples of these questions
    if stats.samples_per_question > 1:
        print(f"diversity (D={stats.samples_per_question}): {spread.describe()}")
    if warning := spread.warning():
        print(f"warning: {warning}")
    if stats.stopped == "budget":
        print(f"stopped at the budget of ${args.budget}: raise --budget and run again to continue")
    elif stats.stopped == "cancelled":
        print("cancelled: run again to continue where it stopped")
    if stats.failed:
        print(f"{stats.failed} samples failed (reasons stored): run again to retry them")
    return 0 if stats.done == stats.total else INCOMPLETE


def request_of(args: argparse.Namespace, exp: Experiment) -> GenerationRequest:
    """The `GenerationRequest` the flags describe, on the questions `exp` snapshotted."""
    source_argv: list[str] = []
    if args.answer_type:
        source_argv += ["--answer-type", args.answer_type]
        source_argv += ["--letters", args.letters] if args.answer_type == "letter" else []
    return GenerationRequest(
        experiment=exp.name,
        teacher=spec_of(args),
        settings=settings_of(args),
        split=args.split,
        limit=args.limit,
        source_argv=tuple(source_argv),
        prices=args.prices,
    )


def _start_background(args: argparse.Namespace) -> int:
    settings_of(args)  # bad settings: refused before an experiment is created
    with Store(workspace_path(args.workspace)) as store:
        exp, _, _ = prepare_experiment(store, args)  # snapshot questions before the job starts
        request = request_of(args, exp)
        plan = generation_plan(store, request, args.owner, api_key=api_key_of(args))
        job = start_plan(store, with_own_hub_token(plan), args.owner)  # a local teacher's
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
