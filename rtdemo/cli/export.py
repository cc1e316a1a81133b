"""`rtdemo export`: step 2 of Fine-tune-CoT, the curated rationales as prompt-completion JSONL.

    rtdemo export --experiment demo --out demo.jsonl --format cot
    rtdemo export --experiment demo --out all.jsonl --all    # every finished sample, with verdicts

The kept samples are those that pass answer filtering and review (`rtdemo.curation.curate`); an
`--all` file is also what `rtdemo generate --teacher replay --replay-file` reads back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtdemo.cli.common import add_workspace_flag
from rtdemo.curation.curate import export_jsonl
from rtdemo.workspace.store import Store, workspace_path


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
    """Add export to the CLI."""
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
    add_workspace_flag(p)
    p.add_argument("--owner", default="local", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_export)
