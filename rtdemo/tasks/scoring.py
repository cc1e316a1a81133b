"""Score outputs made anywhere with the paper's answer cleansing (`rtdemo score`).

Input is JSONL, one output per line: `{"completion": str, "answer": str, "finish_reason": str?}`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.tasks.cleansing import Metrics, OutputFormat, Verdict, judge, metrics
from rtdemo.tasks.types import AnswerFormat

MAX_ERRORS_SHOWN = 20


def _parse_line(number: int, line: str) -> tuple[str, str, str | None]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in ("completion", "answer") if k not in row]
    if missing:
        raise ValueError(f"missing {' and '.join(missing)} (has: {', '.join(row) or 'nothing'})")
    completion, answer, finish = row["completion"], row["answer"], row.get("finish_reason")
    if completion is None:
        completion = ""
    if not isinstance(completion, str):
        raise ValueError("completion is not a string")
    if answer is None or str(answer).strip() == "":
        raise ValueError("empty answer")
    if finish is not None and not isinstance(finish, str):
        raise ValueError("finish_reason is not a string")
    return completion, str(answer), finish


def score_file(
    path: Path, answer: AnswerFormat, fmt: OutputFormat
) -> tuple[list[Verdict], Metrics]:
    """Judge every line of a JSONL file; all malformed lines are reported together."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except UnicodeDecodeError as err:
        line = Path(path).read_bytes()[: err.start].count(b"\n") + 1
        raise UserError(
            f"{path} line {line}: not UTF-8 (byte {err.start}); save it as UTF-8"
        ) from None
    verdicts, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            completion, gold, finish = _parse_line(number, line)
        except ValueError as err:
            errors.append(f"line {number}: {err}")
            continue
        verdicts.append(judge(completion, gold, answer, fmt, finish))
    if errors:
        more = len(errors) - MAX_ERRORS_SHOWN
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN]) + (
            f"\n  and {more} more" if more > 0 else ""
        )
        raise UserError(f"{len(errors)} problems in {path}:\n  {shown}")
    if not verdicts:
        raise UserError(f"{path} has no outputs to score")
    return verdicts, metrics(verdicts)
