"""The run folder of a background job: its log, its progress records and its cancel file.

Job N of kind K runs in `<workspace>/runs/N-K/`, which holds

    log.txt          the child's stdout and stderr, plus the lines `JobContext.log` appends
    progress.jsonl   one JSON object per progress report, with its `time`
    cancel           written once a cancel was asked for; its age is the time since the request

Readers here never fail on a file being written: a half-written last line is left out.

    last_progress(job)      # {"time": ..., "done": 12, "total": 50, ...} or None
    tail_log(job, 20)       # the last 20 lines of log.txt
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtdemo.jobs.records import Job

LOG_NAME = "log.txt"
PROGRESS_NAME = "progress.jsonl"
CANCEL_NAME = "cancel"


def append_text(path: Path, text: str) -> None:
    """Append in one write to a file opened with O_APPEND, so lines of writers never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _parse_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.split("\n")[:-1]:  # the last piece is empty or a line still being written
        with contextlib.suppress(ValueError):
            if isinstance(record := json.loads(line), dict):
                records.append(record)
    return records


def read_progress(job: Job) -> list[dict[str, Any]]:
    """Every progress record of `job`, oldest first; a half-written last line is left out."""
    try:
        return _parse_lines((job.run_dir / PROGRESS_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


def _tail(path: Path, size: int) -> tuple[str, bool]:
    """The last `size` bytes of `path` as text, and whether that is the whole file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            start = max(0, f.tell() - size)
            f.seek(start)
            return f.read().decode("utf-8", errors="replace"), start == 0
    except FileNotFoundError:
        return "", True


def last_progress(job: Job) -> dict[str, Any] | None:
    """The latest complete progress record of `job`, or None; reads only the end of the file."""
    text, whole = _tail(job.run_dir / PROGRESS_NAME, 65536)
    records = _parse_lines(text if whole else text.partition("\n")[2])
    if not records and not whole:
        records = read_progress(job)
    return records[-1] if records else None


def tail_log(job: Job, lines: int = 50) -> str:
    """The last `lines` lines of the job's log."""
    text, whole = _tail(job.run_dir / LOG_NAME, max(lines, 1) * 400)
    kept = (text if whole else text.partition("\n")[2]).splitlines()
    return "\n".join(kept[-lines:]) if lines > 0 else ""
