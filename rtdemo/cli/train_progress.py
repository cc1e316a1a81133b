"""How a training run reports its progress to people: the terminal, and a background job's log.

Lines are `rtdemo.jobs.progress.format_progress` of the trainer's progress records (step, loss,
learning rate, tokens/s, ETA). `job_progress` feeds a job's progress file every record and its
log a line now and then; `printer` is the foreground `rtdemo train`'s output.
"""

from __future__ import annotations

from collections.abc import Callable

from rtdemo.jobs.progress import format_progress, progress_printer

LOG_EVERY = 25  # a background training logs a line every this many steps (and its first and last)
PRINT_EVERY_S = 5.0  # the foreground prints a line at most this often (and at the last step)


def job_progress(
    progress: Callable[..., None], log: Callable[[str], None], every: int = LOG_EVERY
) -> Callable[[dict], None]:
    """A training `on_progress` for a job: every record to `progress(**record)` (the progress
    file the tabs read), and a `format_progress` line to `log` for the first record, every
    `every`-th step and the last step, so the job's log says how it goes without a line per
    step (lines by step, not by time: the same run logs the same steps)."""
    first = [True]

    def on_progress(record: dict) -> None:
        progress(**record)
        step = record.get("step")
        if first[0] or (step and step % every == 0) or step == record.get("total"):
            first[0] = False
            log(format_progress(record))

    return on_progress


def printer() -> Callable[[dict], None]:
    """A training `on_progress` for the terminal: a line every 5 seconds and at the last step."""
    return progress_printer(lambda line: print(line, flush=True), PRINT_EVERY_S)
