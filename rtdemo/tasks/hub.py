"""Tasks from the Hugging Face Hub, through `datasets.load_dataset`, or from a local copy.

A local copy is a folder laid out like the Hub repository, `$RTDEMO_HUB_DIR/<org>/<name>/` (with a
`<config>/` subfolder when the dataset has configs), holding data files whose names say their split
(`train.jsonl`, `test.parquet`, `validation.csv`...). With neither network nor a copy, loading fails
at once with a message that says so, instead of a traceback or a long retry loop.

Multiple-choice rows are verbalised as in the paper: `"{q} Answer choices: (A) x, (B) y, ... ."`
(BIG-bench: `"{q}\\nWhich choice is true? Answer choices: ..."`), the gold answer being the letter.
"""

from __future__ import annotations

import os
import socket
import string
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from rtdemo.errors import UserError
from rtdemo.tasks.paper import paper_data_dir
from rtdemo.tasks.types import Example, HubSource, TaskSpec

ENV_VAR = "RTDEMO_HUB_DIR"
AQUA_TRAIN_SIZE = 97467
_TRUE = {"1", "true", "yes", "on"}


def verbalise(question: str, choices: list[str], which_choice: bool = False) -> str:
    """A multiple-choice question in the paper's wording."""
    listed = ", ".join(
        f"({letter}) {c}" for letter, c in zip(string.ascii_uppercase, choices, strict=False)
    )
    joiner = "\nWhich choice is true? " if which_choice else " "
    return f"{question.strip()}{joiner}Answer choices: {listed}."


def _plain(row: dict, src: HubSource) -> tuple[str, str]:
    return str(row[src.question_column]), _answer_text(row[src.answer_column])


def _answer_text(value: object) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return str(value).strip()


def _gsm8k(row: dict, src: HubSource) -> tuple[str, str]:
    answer = str(row["answer"])
    if "####" not in answer:
        raise ValueError("answer has no '####' final-answer marker")
    return str(row["question"]), answer.split("####")[-1].strip()


def _aqua(row: dict, src: HubSource) -> tuple[str, str]:
    # Options come as "A)21"; the paper lists them as "(A) 21".
    options = [str(o).split(")", 1)[-1].strip() for o in row["options"]]
    return verbalise(str(row["question"]), options), str(row["correct"]).strip()


def _svamp(row: dict, src: HubSource) -> tuple[str, str]:
    question = f"{str(row['Body']).strip()} {str(row['Question']).strip()}"
    return question, _answer_text(row[src.answer_column])


def _commonsense_qa(row: dict, src: HubSource) -> tuple[str, str]:
    choices = row["choices"]
    return verbalise(str(row["question"]), list(choices["text"])), str(row["answerKey"])


def _bigbench(row: dict, src: HubSource) -> tuple[str, str]:
    question = str(row["inputs"]).strip().removeprefix("Q:").removesuffix("A:").strip()
    targets, scores = list(row["multiple_choice_targets"]), list(row["multiple_choice_scores"])
    if 1 not in scores:
        raise ValueError("no choice is marked correct in multiple_choice_scores")
    letter = string.ascii_uppercase[scores.index(1)]
    return verbalise(question, targets, which_choice=True), letter


def _strategy_qa(row: dict, src: HubSource) -> tuple[str, str]:
    return str(row["question"]), _answer_text(row["answer"])


ADAPTERS: dict[str, Callable[[dict, HubSource], tuple[str, str]]] = {
    "plain": _plain,
    "gsm8k": _gsm8k,
    "aqua": _aqua,
    "svamp": _svamp,
    "commonsense_qa": _commonsense_qa,
    "bigbench": _bigbench,
    "strategy_qa": _strategy_qa,
}


def hub_dir(explicit: str | Path | None = None) -> Path | None:
    """The folder of local Hub copies: the explicit path, else `RTDEMO_HUB_DIR`, else None."""
    value = explicit if explicit is not None else os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def local_copy(src: HubSource, root: Path | None) -> Path | None:
    """The folder of a local copy of `src` under `root`, if there is one."""
    if root is None:
        return None
    folder = root / src.dataset_id
    if src.config and (folder / src.config).is_dir():
        folder = folder / src.config
    return folder if folder.is_dir() else None


@lru_cache(maxsize=1)
def hub_unreachable_reason() -> str | None:
    """Why the Hub cannot be reached from here, or None if it can (checked once per process)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or 443
    try:
        # A quick probe: datasets would otherwise retry for ~25 s before giving up.
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as err:
        return f"cannot reach {host}: {err.strerror or err}"


def hub_status(task: TaskSpec, root: Path | None) -> tuple[bool, str]:
    """Whether `task` can be loaded from the Hub (or a local copy) here, and why not."""
    if task.hub is None:
        return False, f"{task.name} has no Hub dataset"
    copy = local_copy(task.hub, root)
    if copy is not None:
        return True, f"local copy at {copy}"
    reason = hub_unreachable_reason()
    if reason:
        return False, f"needs network or a local copy: {task.hub.dataset_id} ({reason})"
    return True, f"{task.hub.dataset_id} on the Hub"


def _load_rows(task: TaskSpec, hub_split: str, root: Path | None) -> list[dict]:
    import datasets  # heavy: imported only when a Hub task is really loaded

    src = task.hub
    assert src is not None
    copy = local_copy(src, root)
    if copy is None:
        reason = hub_unreachable_reason()
        if reason:
            expected = (root or Path(f"${ENV_VAR}")) / src.dataset_id
            raise UserError(
                f"{task.name} needs network or a local copy: {src.dataset_id} cannot be loaded "
                f"({reason}). Put a copy in {expected}/ or use the paper files."
            )
        target, kwargs = src.dataset_id, {"name": src.config}
    else:
        target, kwargs = str(copy), {}
    try:
        dataset = datasets.load_dataset(target, split=hub_split, **kwargs)
    except Exception as err:
        raise UserError(
            f"{task.name} needs network or a local copy: loading {target} "
            f"(split {hub_split!r}) failed: {type(err).__name__}: {str(err)[:300]}"
        ) from None
    return list(dataset)


def load_hub(
    task: TaskSpec, split: str, root: Path | None = None, paper_data: Path | None = None
) -> list[Example]:
    """The `split` of `task` from the Hub (or a local copy), verbalised like the paper's files."""
    if task.hub is None:
        raise UserError(f"{task.name} has no Hub dataset; use the paper files or upload a file")
    src = task.hub
    rows = _load_rows(task, src.splits[split], root)
    indices = list(range(len(rows)))
    if task.key == "aqua":
        indices = _aqua_paper_indices(split, len(rows), paper_data_dir(paper_data)) or indices
    adapter = ADAPTERS[src.adapter]
    examples = []
    for i in indices:
        try:
            question, answer = adapter(rows[i], src)
        except (KeyError, TypeError, ValueError) as err:
            columns = ", ".join(rows[i]) if isinstance(rows[i], dict) else "?"
            raise UserError(
                f"{src.dataset_id} row {i} does not have the expected schema ({err!r}); "
                f"its columns are: {columns}"
            ) from None
        examples.append(Example(question, answer, split, i))
    return examples


def _aqua_paper_indices(split: str, n_rows: int, paper_root: Path | None) -> list[int] | None:
    """AQUA's paper split (indices count 97,467 train then 254 test items), if the file is there."""
    if paper_root is None or not (paper_root / "split" / "aqua__default.json").is_file():
        return None
    import json

    indices = json.loads((paper_root / "split" / "aqua__default.json").read_text())[split]
    offset = AQUA_TRAIN_SIZE if split == "test" else 0
    positions = [i - offset for i in indices]
    if any(not 0 <= p < n_rows for p in positions):
        raise UserError(
            f"the paper's AQUA split does not fit the loaded {split} split ({n_rows} rows): "
            "is this the 'raw' config of deepmind/aqua_rat?"
        )
    return positions
