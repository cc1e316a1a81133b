"""CLI command groups, one module each; each has `register(subparsers)` called by
`rtdemo.cli.main`."""

from __future__ import annotations

import argparse
from pathlib import Path

WORKSPACE_HELP = "workspace folder (default: $RTDEMO_HOME, else ./rtdemo-data)"


def add_workspace_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--workspace DIR`, the same on every command that reads or writes a workspace."""
    parser.add_argument("--workspace", type=Path, help=WORKSPACE_HELP)
