"""How a training run reports its progress to people: the terminal, and a background job's log.

`progress_line` turns one progress record of the trainer (step, loss, learning rate, tokens/s,
ETA) into a line; `job_progress` feeds a job's progress file every record and its log a line now
and then; `printer` is the foreground `rtdemo train`'s output.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LOG_EVERY = 25  # a background training logs a line every this many steps (and its first and last)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def progress_line(record: dict) -> str:
    """A training progress record for people: step/total, loss, lr, tokens/s and ETA."""
    parts = [f"step {record.get('step')}/{record.get('total')}"]
    if record.get("loss") is not None:
        parts.append(f"loss {float(record['loss']):.4f}")
    if record.get("learning_rate") is not None:
        parts.append(f"lr {float(record['learning_rate']):.2e}")
    if record.get("tokens_per_second") is not None:
        parts.append(f"{float(record['tokens_per_second']):.0f} tokens/s")
    if record.get("eta") is not None:
        parts.append(f"ETA {_duration(float(record['eta']))}")
    return ", ".join(parts)


def job_progress(
    progress: Callable[..., None], log: Callable[[str], None], every: int = LOG_EVERY
) -> Callable[[dict], None]:
    """A training `on_progress` for a job: every record to `progress(**record)` (the progress
    file the tabs read), and a `progress_line` to `log` for the first record, every `every`-th
    step and the last step, so the job's log says how it goes without a line per step."""
    first = [True]

    def on_progress(record: dict) -> None:
        progress(**record)
        step = record.get("step")
        if first[0] or (step and step % every == 0) or step == record.get("total"):
            first[0] = False
            log(progress_line(record))

    return on_progress


def printer() -> Callable[[dict], None]:
    """A training `on_progress` for the terminal: a line every 5 seconds and at the last step."""
    last = [0.0]

    def show(p: dict) -> None:
        now = time.monotonic()
        if now - last[0] >= 5 or p.get("step") == p.get("total"):
            last[0] = now
            loss = p.get("loss")
            print(
                f"step {p.get('step')}/{p.get('total')} loss "
                f"{loss if loss is None else round(loss, 4)} eta {p.get('eta')}s",
                flush=True,
            )

    return show
