"""Progress for people: one formatter for a progress record, and one throttle for its lines.

A progress record is what a stage reports as it goes (a job appends them to its progress file):
generation `done`/`total`/`failures`/`spend`/`accuracy` (and, for D > 1, distinct rationales
per question and questions whose samples are identical), training `step`/`total`/`loss`/
`learning_rate`/`tokens_per_second`, evaluation `done`/`total`; any of them may have an `eta`.
`format_progress` makes one line of whichever figures a record has, for the terminal, a job's log
(", " between figures) and the tabs (" · "):

    format_progress({"step": 25, "total": 26, "loss": 0.61, "learning_rate": 2e-4,
                     "tokens_per_second": 5120.4, "eta": 3})
    # 'step 25/26, loss 0.6100, lr 2.00e-04, 5120 tokens/s, ETA 3 s'

`progress_printer` writes such a line at most every so many seconds (and always the first and the
last record); `Throttle` is the timing rule alone, for callers that write records, not lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

NO_PROGRESS = "no progress reported yet"
# The figures of a record shown as they are, in this order (after done or step, and failures).
FIGURES = (
    ("loss", "loss {:.4f}"),
    ("learning_rate", "lr {:.2e}"),
    ("tokens_per_second", "{:.0f} tokens/s"),
    ("spend", "spent ${:.4f}"),
    ("accuracy", "teacher accuracy so far {:.1%}"),
)


def duration(seconds: Any) -> str:
    """Seconds for people: "42 s", "2.5 min" from 90 s on, "?" when unknown."""
    if seconds is None:
        return "?"
    seconds = float(seconds)
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def format_progress(record: dict[str, Any] | None, sep: str = ", ") -> str:
    """One line of the figures a progress record has (training, generation or evaluation)."""
    if not record:
        return NO_PROGRESS
    parts = []
    if "step" in record:
        parts.append(f"step {record['step']}/{record.get('total', '?')}")
    elif "done" in record:
        parts.append(f"{record['done']}/{record.get('total', '?')} done")
    if record.get("failures"):
        parts.append(f"{record['failures']} failed")
    parts += [
        text.format(float(record[name])) for name, text in FIGURES if record.get(name) is not None
    ]
    if (record.get("samples_per_question") or 1) > 1 and record.get("distinct_per_question"):
        # Diverse reasoning: D samples per question, of which how many differ.
        parts.append(
            f"{float(record['distinct_per_question']):.2f} distinct rationales per question "
            f"(D={record['samples_per_question']})"
        )
        if record.get("identical_questions"):
            parts.append(
                f"{record['identical_questions']} of {record['sampled_questions']} questions' "
                "samples identical"
            )
    if record.get("eta") is not None:
        parts.append(f"ETA {duration(record['eta'])}")
    return sep.join(parts)


def is_last(record: dict[str, Any]) -> bool:
    """Whether a record reports the end: the last step, or every item done or failed."""
    total = record.get("total")
    if total is None:
        return False
    if "step" in record:
        return record["step"] == total
    return (record.get("done") or 0) + (record.get("failures") or 0) >= total


class Throttle:
    """Says yes at most once every `seconds`, and always to the first call and to `last=True`."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.previous: float | None = None

    def __call__(self, last: bool = False) -> bool:
        now = self.clock()
        if last or self.previous is None or now - self.previous >= self.seconds:
            self.previous = now
            return True
        return False


def progress_printer(
    write: Callable[[str], None], seconds: float, sep: str = ", "
) -> Callable[[dict[str, Any]], None]:
    """An `on_progress(record)` that writes `format_progress(record)` at most every `seconds`,
    and always for the first and the last record."""
    throttle = Throttle(seconds)

    def show(record: dict[str, Any]) -> None:
        if throttle(is_last(record)):
            write(format_progress(record, sep))

    return show
