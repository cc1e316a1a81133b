"""`rtdemo generate`, `rtdemo estimate` and `rtdemo export`: steps 1 and 2 of Fine-tune-CoT.

    rtdemo generate --task coin_flip --limit 50 --teacher builtin --samples 4 --temperature 0.7 \\
        --experiment demo
    OPENAI_API_KEY=... rtdemo generate --task gsm8k --teacher openai --model gpt-4o-mini \\
        --budget 2 --experiment gsm8k-mini --background
    rtdemo export --experiment demo --out demo.jsonl --format cot

Keys come from the environment (`OPENAI_API_KEY`) only: there is no flag for them, so they never
reach shell history, job records or logs. The app hands a user's key to `start_command`, which sets
`args.secret_env`: when it is set, it is the only place a key is taken from (the server's own
environment is shared by every user of the app).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rtdemo.curation import export_jsonl, question_yield
from rtdemo.errors import UserError
from rtdemo.generation import GenerationSettings, RunStats, run_generation
from rtdemo.pricing import Estimate, Price, estimate, price_of, price_table
from rtdemo.samples import SampleKey, load_samples
from rtdemo.store import Experiment, Store, workspace_path
from rtdemo.tasks import load_examples
from rtdemo.tasks.types import SPLITS, AnswerFormat, Example
from rtdemo.teachers.base import Teacher

TEACHERS = ("builtin", "openai", "hf", "replay")
BUILTIN_TASKS = ("coin_flip", "last_letter_concatenation")
KEY_ENV = "OPENAI_API_KEY"
INCOMPLETE = 3  # exit status when a run ended with samples still missing


def add_teacher_flags(p: argparse.ArgumentParser) -> None:
    """Flags that choose and configure a teacher and its sampling."""
    g = p.add_argument_group("teacher")
    g.add_argument(
        "--teacher",
        choices=TEACHERS,
        default="builtin",
        help="builtin (offline, coin_flip/last_letter only), openai (any "
        "OpenAI-compatible server), hf (local transformers model), replay",
    )
    g.add_argument(
        "--base-url",
        help="OpenAI-compatible server, e.g. http://localhost:8000/v1 "
        "(default: OpenAI); the key comes from $OPENAI_API_KEY",
    )
    g.add_argument("--model", help="teacher model name (openai) or Hub id / folder (hf)")
    g.add_argument(
        "--mode",
        choices=("chat", "completions"),
        default="chat",
        help="openai: chat emulation of the two calls (default) or raw /v1/completions",
    )
    g.add_argument(
        "--replay-file",
        action="append",
        type=Path,
        default=[],
        help="replay: a completion file of the paper or an `rtdemo export --all` file (repeatable)",
    )
    g.add_argument(
        "--error-rate",
        type=float,
        default=0.1,
        help="builtin: share of samples with a deliberate mistake (default 0.1)",
    )
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    s = p.add_argument_group("sampling and cost")
    s.add_argument("--samples", type=int, default=1, help="D: rationales per question (default 1)")
    s.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="T for the rationale call (paper: 0 for D=1, 0.7 for diverse)",
    )
    s.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        help="max tokens per call (paper: 128; truncation is recorded)",
    )
    s.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    s.add_argument("--rpm", type=float, help="at most this many requests per minute")
    s.add_argument("--budget", type=float, help="stop before spending more than this many USD")
    s.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        help="tries per request before it is recorded as failed (default 5)",
    )
    s.add_argument(
        "--prices",
        type=Path,
        help="your price table (YAML: model: {input, output} USD per million tokens)",
    )


def add_question_flags(p: argparse.ArgumentParser) -> None:
    """Flags that choose the experiment and its questions."""
    from rtdemo.cli import add_source_flags

    p.add_argument("--task", help="task key (needed when the experiment is new)")
    p.add_argument("--split", choices=SPLITS, default="train", help="split (default train)")
    p.add_argument("--limit", type=int, help="the first N questions of the split")
    p.add_argument("--experiment", required=True, help="experiment name (created if new)")
    p.add_argument(
        "--workspace",
        type=Path,
        help="workspace folder (default: $RTDEMO_HOME, else ./rtdemo-data)",
    )
    p.add_argument("--owner", default="local", help=argparse.SUPPRESS)
    p.add_argument(
        "--stored-questions",
        action="store_true",
        help="use only the questions the (existing) experiment already holds; no source is "
        "loaded, source flags only say how answers are read",
    )
    add_source_flags(p)


def api_key_of(args: argparse.Namespace) -> str | None:
    """The API key for this command: from `args.secret_env` when the app set it, else from the
    environment (CLI users)."""
    secret_env = getattr(args, "secret_env", None)
    source = os.environ if secret_env is None else secret_env
    return source.get(KEY_ENV) or None


def build_teacher(args: argparse.Namespace, task: str, *, need_key: bool = True) -> Teacher:
    """The teacher the flags describe; keys from `api_key_of` only.

    `need_key=False` builds an OpenAI-compatible teacher without a key, for estimates (which
    request nothing).
    """
    if args.teacher == "builtin":
        if task not in BUILTIN_TASKS:
            raise UserError(
                f"the built-in offline teacher only knows {' and '.join(BUILTIN_TASKS)}; for "
                f"{task} choose --teacher openai (with --model) or --teacher hf"
            )
        from rtdemo.teachers.builtin import BuiltinTeacher

        return BuiltinTeacher(error_rate=args.error_rate)
    if args.teacher == "replay":
        from rtdemo.teachers.replay import ReplayTeacher

        return ReplayTeacher(args.replay_file)
    if not args.model:
        raise UserError(f"--teacher {args.teacher} needs --model")
    if args.teacher == "hf":
        from rtdemo.teachers.local_hf import LocalHFTeacher

        return LocalHFTeacher(args.model)
    from rtdemo.teachers.openai_compat import OpenAITeacher

    key = api_key_of(args)
    if not key and not need_key:
        key = "no-key: estimates request nothing"
    elif not key and getattr(args, "secret_env", None) is not None:
        # OpenAITeacher would fall back to the server's own key: app users never get that one.
        raise UserError(
            "an OpenAI-compatible teacher needs an API key: type it in the API key box "
            "(a local server without authentication accepts any non-empty value)"
        )
    return OpenAITeacher(
        args.model,
        base_url=args.base_url,
        api_key=key,
        mode=args.mode,
        timeout=args.timeout,
    )


def settings_of(args: argparse.Namespace) -> GenerationSettings:
    """The sampling settings the flags describe (validated)."""
    return GenerationSettings(
        samples=args.samples,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        concurrency=args.concurrency,
        rpm=args.rpm,
        budget=args.budget,
        max_attempts=args.max_attempts,
    )


def prepare_experiment(
    store: Store, args: argparse.Namespace, *, load: bool = True
) -> tuple[Experiment, list[Example], AnswerFormat]:
    """Find or create the experiment, snapshot its questions, return the ones to generate for."""
    from rtdemo.cli import source_options
    from rtdemo.tasks import get_task

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
        teacher = build_teacher(args, exp.task, need_key=need_key)
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
        teacher = build_teacher(args, exp.task)
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
        from rtdemo.jobs import job_context

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
    from rtdemo.jobs import start_job

    with Store(workspace_path(args.workspace)) as store:
        exp, _, _ = prepare_experiment(store, args)  # snapshot questions before the job starts
        settings = settings_of(args)  # fail now, not in the background, on bad settings or teacher
        teacher = build_teacher(args, exp.task)
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


def cmd_export(args: argparse.Namespace) -> int:
    """Write the curated set (or every finished sample) as prompt-completion JSONL."""
    with Store(workspace_path(args.workspace)) as store:
        exp = store.get_experiment(args.experiment, owner=args.owner)
        n = export_jsonl(
            store,
            exp,
            args.out,
            args.format,
            include_all=args.all,
            student=args.student,
            filter_answers=not args.no_filter,
        )
    what = "finished samples" if args.all else "kept samples"
    print(f"wrote {n} {what} of {exp.name} to {args.out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add generate, estimate and export to the CLI."""
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
    p = commands.add_parser("export", help="write the curated rationales as JSONL")
    p.add_argument("--experiment", required=True, help="experiment name")
    p.add_argument("--out", required=True, type=Path, help="output .jsonl file")
    p.add_argument(
        "--format",
        choices=("cot", "vanilla"),
        default="cot",
        help="Fine-tune-CoT (prompt '{q} ###', completion ' {r} --> {a}') or vanilla",
    )
    p.add_argument(
        "--student",
        choices=("causal", "seq2seq"),
        default="causal",
        help="causal LM pairs (default) or seq2seq (T5) pairs",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="every finished sample with its verdict, not only the kept ones",
    )
    p.add_argument(
        "--no-filter",
        action="store_true",
        help="keep samples whose answer is wrong too (answer filtering off)",
    )
    p.add_argument(
        "--workspace",
        type=Path,
        help="workspace folder (default: $RTDEMO_HOME, else ./rtdemo-data)",
    )
    p.add_argument("--owner", default="local", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_export)
