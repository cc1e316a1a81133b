"""What several CLI command groups share: the `--workspace` flag, and the task-source flags with
the `SourceOptions` they describe. Each command group is a module of `rtdemo.cli` with a
`register(subparsers)` that `rtdemo.cli.main` calls."""

from __future__ import annotations

import argparse
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.tasks import SourceOptions
from rtdemo.tasks.synthetic import SyntheticSettings
from rtdemo.tasks.types import ANSWER_TYPES, SOURCES, AnswerFormat

WORKSPACE_HELP = "workspace folder (default: $RTDEMO_HOME, else ./rtdemo-data)"


def add_workspace_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--workspace DIR`, the same on every command that reads or writes a workspace."""
    parser.add_argument("--workspace", type=Path, help=WORKSPACE_HELP)


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that say where a task's questions come from."""
    group = parser.add_argument_group("task sources")
    group.add_argument(
        "--source", choices=SOURCES, help="where the questions come from (default: first available)"
    )
    group.add_argument(
        "--paper-data",
        type=Path,
        metavar="DIR",
        help="folder of the paper's files (dataset/, split/); default: $RTDEMO_PAPER_DATA",
    )
    group.add_argument(
        "--hub-dir",
        type=Path,
        metavar="DIR",
        help="folder of local Hub dataset copies (<org>/<name>/); default: $RTDEMO_HUB_DIR",
    )
    group.add_argument("--file", type=Path, help="your own JSONL, JSON or CSV file of questions")
    group.add_argument("--question-column", default="question", help="the file's question column")
    group.add_argument("--answer-column", default="answer", help="the file's answer column")
    group.add_argument(
        "--answer-type", choices=ANSWER_TYPES, help="the file's answer type (default: the task's)"
    )
    group.add_argument(
        "--letters", default="ABCDE", help="choice letters for --answer-type letter (default ABCDE)"
    )
    group.add_argument("--seed", type=int, default=0, help="synthetic tasks: random seed")
    group.add_argument("--size", type=int, default=500, help="synthetic tasks: number of questions")
    group.add_argument(
        "--length",
        type=int,
        default=4,
        help="synthetic tasks: people (coin flip) or words per question",
    )
    group.add_argument(
        "--min-length",
        type=int,
        help="synthetic tasks: mix lengths from this up to --length (default: all --length)",
    )


def source_options(args: argparse.Namespace) -> SourceOptions:
    """The task-source options the flags describe."""
    answer = None
    if args.answer_type:
        try:
            answer = AnswerFormat(
                args.answer_type, args.letters if args.answer_type == "letter" else ""
            )
        except ValueError as err:
            raise UserError(str(err)) from None
    return SourceOptions(
        paper_data=args.paper_data,
        hub_dir=args.hub_dir,
        file=args.file,
        question_column=args.question_column,
        answer_column=args.answer_column,
        answer=answer,
        synthetic=SyntheticSettings(
            seed=args.seed, size=args.size, length=args.length, min_length=args.min_length
        ),
    )
