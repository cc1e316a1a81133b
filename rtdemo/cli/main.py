"""The command line: `python -m rtdemo <command>` (also `rtdemo <command>`).

    python -m rtdemo tasks                      # the twelve tasks and where each can come from
    python -m rtdemo tasks show coin_flip --limit 3
    python -m rtdemo score --task gsm8k --input preds.jsonl --format cot
    python -m rtdemo experiments create demo --task coin_flip

Every command's `--help` lists its flags. A problem with the input ends with one line on stderr
(`error: ...`) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rtdemo import __version__
from rtdemo.cli import backup, evaluate, export, generate, models, push, train
from rtdemo.cli import jobs as jobs_commands
from rtdemo.cli.common import add_source_flags, add_workspace_flag, source_options
from rtdemo.curation.curate import curate, question_yield
from rtdemo.errors import UserError
from rtdemo.tasks import TASKS, SourceOptions, get_task, load_examples, source_status
from rtdemo.tasks.cleansing import OUTPUT_FORMATS
from rtdemo.tasks.scoring import score_file
from rtdemo.tasks.types import SPLITS
from rtdemo.validation import Parser
from rtdemo.workspace.store import Store, workspace_path


def _task_record(key: str, options: SourceOptions) -> dict:
    task = TASKS[key]
    status = source_status(task, options)
    return {
        "key": task.key,
        "name": task.name,
        "answer_type": task.answer_type,
        "letters": task.answer.letters or None,
        "paper_sizes": task.paper_sizes,
        "description": task.description,
        "sources": {name: {"available": ok, "reason": why} for name, (ok, why) in status.items()},
        "notes": list(task.notes),
    }


def cmd_tasks(args: argparse.Namespace) -> int:
    """List the twelve tasks with their answer types and source availability."""
    if getattr(args, "tasks_command", None) == "show":
        return cmd_tasks_show(args)
    options = source_options(args)
    records = [_task_record(key, options) for key in TASKS]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    print(f"{'task':28} {'answer':8} {'train/test':>12}  sources available here")
    for r in records:
        task = TASKS[r["key"]]
        applicable = ["paper"] + ["hub"] * (task.hub is not None) + ["synthetic"] * task.synthetic
        here = " ".join(
            f"{name}{'✔' if r['sources'][name]['available'] else '✘'}" for name in applicable
        )
        sizes = f"{r['paper_sizes']['train']}/{r['paper_sizes']['test']}"
        print(f"{r['key']:28} {r['answer_type']:8} {sizes:>12}  {here}")
    print(
        "\nAny task also takes your own file (--source file --file PATH). Why a source is "
        "missing: rtdemo tasks --json"
    )
    return 0


def cmd_tasks_show(args: argparse.Namespace) -> int:
    """Print a task's questions and gold answers."""
    if args.limit is not None and args.limit < 0:
        raise UserError("--limit must be 0 or more")
    examples = load_examples(args.key, args.split, args.source, source_options(args))
    shown = examples if args.limit is None else examples[: args.limit]
    for e in shown:
        if args.json:
            print(
                json.dumps(
                    {
                        "question": e.question,
                        "answer": e.answer,
                        "split": e.split,
                        "index": e.index,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            print(f"[{e.split} #{e.index}] {e.question}\n  answer: {e.answer}\n")
    if not args.json:
        print(
            f"{len(shown)} of {len(examples)} {args.split} questions of {get_task(args.key).name}"
        )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score predictions made anywhere with the paper's answer cleansing."""
    task = get_task(args.task)
    verdicts, summary = score_file(args.input, task.answer, args.format)
    if args.json:
        for v in verdicts:
            print(json.dumps(v.to_dict()))
        print(json.dumps({"metrics": summary.to_dict()}), file=sys.stderr)
        return 0
    complete = "n/a (no finish_reason)" if summary.complete is None else f"{summary.complete:.2%}"
    print(f"{summary.count} outputs of {task.name}, format {args.format}")
    print(f"  accuracy         {summary.accuracy:.2%}")
    print(f"  contains answer  {summary.contains_answer:.2%}")
    print(f"  correct format   {summary.correct_format:.2%}")
    print(f"  complete         {complete}")
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    """Create or list experiments in the workspace."""

    with Store(workspace_path(args.workspace)) as store:
        if args.experiments_command == "create":
            examples = []
            for split in args.splits:
                part = load_examples(args.task, split, args.source, source_options(args))
                examples += part if args.limit is None else part[: args.limit]
            exp = store.create_experiment(args.name, args.task, config={"source": args.source})
            added = store.add_questions(exp.id, examples)
            print(
                f"created experiment {exp.name} ({exp.task}) with {added} questions in {store.path}"
            )
            return 0
        if args.experiments_command == "show":
            return _show_experiment(store, args)
        experiments = store.list_experiments()
        if args.json:
            for exp in experiments:
                print(
                    json.dumps(
                        {
                            "name": exp.name,
                            "task": exp.task,
                            "created_at": exp.created_at,
                            "questions": store.count_questions(exp.id),
                        }
                    )
                )
        for exp in [] if args.json else experiments:
            print(
                f"{exp.name:24} {exp.task:28} {store.count_questions(exp.id):6} questions  "
                f"{exp.created_at}"
            )
        if not experiments and not args.json:
            print("no experiments yet: rtdemo experiments create NAME --task KEY")
        return 0


def _show_experiment(store, args: argparse.Namespace) -> int:
    """Teacher accuracy and per-question yield: what to look at before training."""

    exp = store.get_experiment(args.name)
    y = question_yield(store, exp, args.split)
    kept = sum(c.kept for c in curate(store, exp, split=args.split))
    if args.json:
        print(json.dumps({"experiment": exp.name, "task": exp.task, "kept": kept, **y}))
        return 0
    acc = "not measured" if y["accuracy"] is None else f"{y['accuracy']:.1%}"
    print(
        f"{exp.name} ({exp.task}), {args.split}: {store.count_questions(exp.id, args.split)} "
        f"questions, {y['done']} finished samples, teacher accuracy {acc}, {kept} kept after "
        f"filtering and review; {y['questions_with_a_correct_sample']} questions have at least "
        "one correct rationale"
    )
    print(f"diversity: {y['diversity']}")
    if y["diversity_warning"]:
        print(f"warning: {y['diversity_warning']}")
    print(
        f"{'index':>6} {'samples':>7} {'correct':>7} {'truncated':>9} {'failed':>6} "
        f"{'distinct':>8}  question"
    )
    for q in y["questions"]:
        text = q["question"].replace("\n", " ")
        print(
            f"{q['index']:>6} {q['samples']:>7} {q['correct']:>7} {q['truncated']:>9} "
            f"{q['failed']:>6} {q['distinct']:>8}  {text[:70]}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = Parser(
        prog="rtdemo", description="Reasoning Teacher Studio: Fine-tune-CoT end to end."
    )
    parser.add_argument("--version", action="version", version=f"rtdemo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tasks = commands.add_parser("tasks", help="list the tasks, or show one's questions")
    tasks.add_argument("--json", action="store_true", help="print a JSON list of tasks")
    add_source_flags(tasks)
    tasks.set_defaults(func=cmd_tasks)
    tasks_sub = tasks.add_subparsers(dest="tasks_command", metavar="show")
    show = tasks_sub.add_parser("show", help="print a task's questions and gold answers")
    show.add_argument("key", help=f"task key: {', '.join(TASKS)}")
    show.add_argument(
        "--split", choices=SPLITS, default="train", help="which split (default train)"
    )
    show.add_argument("--limit", type=int, help="print at most N questions")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    add_source_flags(show)

    score = commands.add_parser("score", help="score predictions with the paper's answer cleansing")
    score.add_argument("--task", required=True, help="task key (decides the answer type)")
    score.add_argument(
        "--input",
        required=True,
        type=Path,
        help="JSONL, one line per output: completion, answer, optional finish_reason",
    )
    score.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="cot",
        help="cot: Fine-tune-CoT student; vanilla: vanilla student; teacher: call-2 answer text",
    )
    score.add_argument(
        "--json", action="store_true", help="one verdict per input line; metrics on stderr"
    )
    score.set_defaults(func=cmd_score)

    experiments = commands.add_parser("experiments", help="create or list experiments")
    experiments.set_defaults(func=cmd_experiments)
    exp_sub = experiments.add_subparsers(
        dest="experiments_command", required=True, metavar="ACTION"
    )
    create = exp_sub.add_parser("create", help="a new experiment with a snapshot of its questions")
    create.add_argument("name", help="experiment name (letters, digits, - _ .)")
    create.add_argument("--task", required=True, help="task key")
    create.add_argument(
        "--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to snapshot"
    )
    create.add_argument("--limit", type=int, help="at most N questions per split")
    add_source_flags(create)
    listing = exp_sub.add_parser("list", help="the experiments in the workspace")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show_exp = exp_sub.add_parser(
        "show", help="teacher accuracy and per-question yield of an experiment"
    )
    show_exp.add_argument("name", help="experiment name")
    show_exp.add_argument("--split", choices=SPLITS, default="train", help="split (default train)")
    show_exp.add_argument("--json", action="store_true", help="one JSON object")
    for sub in (create, listing, show_exp):
        add_workspace_flag(sub)
    generate.register(commands)
    export.register(commands)
    train.register(commands)
    evaluate.register(commands)
    push.register(commands)
    jobs_commands.register(commands)
    models.register(commands)
    backup.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print one line and return 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)  # a bad flag: a UserError (`Parser`)
        args.argv = argv  # background jobs re-run the same command line
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rtdemo tasks show ... | head`
        return 0


def main_exit() -> None:
    """Console-script entry point: `rtdemo ...`."""
    sys.exit(main())
