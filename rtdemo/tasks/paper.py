"""The paper's processed task files: `dataset/<key>.json` with `split/<key>__default.json`.

The folder comes from a flag or `RTDEMO_PAPER_DATA` (e.g. `../shared/data/reasoning-teacher`). With
it, train/test splits are exactly the paper's. GSM8K's split indices count the 7,473 training items
then the 1,319 test items; when only `gsm8k_test_only.json` is present, test index 7,473 + i is its
item i and the training split is unavailable (it comes from the Hub).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.tasks.types import Example, TaskSpec

ENV_VAR = "RTDEMO_PAPER_DATA"
GSM8K_TRAIN_SIZE = 7473


def paper_data_dir(explicit: str | Path | None = None) -> Path | None:
    """The paper-files folder: the explicit path, else `RTDEMO_PAPER_DATA`, else None."""
    value = explicit if explicit is not None else os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def _files(task: TaskSpec, root: Path) -> tuple[Path | None, Path | None, Path]:
    """(full dataset file or None, GSM8K test-only file or None, split file)."""
    full = root / "dataset" / f"{task.key}.json"
    test_only = root / "dataset" / f"{task.key}_test_only.json"
    return (
        full if full.is_file() else None,
        test_only if test_only.is_file() else None,
        root / "split" / f"{task.key}__default.json",
    )


def paper_status(task: TaskSpec, root: Path | None, split: str | None = None) -> tuple[bool, str]:
    """Whether the paper files for `task` (and `split`, if given) are in `root`, and why not."""
    if root is None:
        return False, f"no paper-data folder given (set {ENV_VAR} or pass --paper-data)"
    if not root.is_dir():
        return False, f"paper-data folder {root} does not exist"
    full, test_only, split_file = _files(task, root)
    if not split_file.is_file():
        return False, f"{split_file} is missing"
    if full is not None:
        return True, f"paper files in {root}"
    if test_only is not None:
        if split == "train":
            return (
                False,
                f"{root} holds only the {task.name} test items; the training set is on the Hub",
            )
        return True, f"paper files in {root} (test split only)"
    return False, f"{root / 'dataset' / (task.key + '.json')} is missing"


@lru_cache(maxsize=32)
def _read_json(path: Path, mtime: float) -> object:
    # mtime is part of the cache key so that an edited file is read again.
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read paper file {path}: {err}") from None


def _load(path: Path) -> object:
    return _read_json(path, path.stat().st_mtime)


def load_paper(task: TaskSpec, root: Path | None, split: str) -> list[Example]:
    """The paper's `split` of `task`, in the order of the paper's split file."""
    ok, reason = paper_status(task, root, split)
    if not ok:
        raise UserError(f"{task.name} paper files are not available: {reason}")
    assert root is not None
    full, test_only, split_file = _files(task, root)
    splits = _load(split_file)
    if not isinstance(splits, dict) or split not in splits:
        raise UserError(f"{split_file} has no {split!r} list of indices")
    items, offset = (_load(full), 0) if full is not None else (_load(test_only), GSM8K_TRAIN_SIZE)
    if not isinstance(items, list):
        raise UserError(f"paper dataset file for {task.key} is not a JSON list")
    examples = []
    for index in splits[split]:
        position = index - offset
        if not 0 <= position < len(items):
            raise UserError(
                f"{split_file}: index {index} is outside the dataset file ({len(items)} items): "
                "the folder's files do not belong together"
            )
        item = items[position]
        examples.append(Example(str(item["question"]), str(item["answer"]), split, int(index)))
    return examples
