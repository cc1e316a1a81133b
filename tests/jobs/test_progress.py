"""Progress for people: one line per record (CLI, job logs, tabs) and one throttle.

.venv/bin/python -m pytest tests/jobs/test_progress.py
"""

from __future__ import annotations

import re

from rtdemo.jobs.progress import (
    NO_PROGRESS,
    Throttle,
    format_progress,
    is_last,
    progress_printer,
)

TRAINING = {
    "step": 25,
    "total": 26,
    "loss": 0.61234,
    "learning_rate": 2e-4,
    "tokens_per_second": 5120.4,
    "eta": 135,
}
GENERATION = {
    "done": 28,
    "total": 28,
    "failed": 0,
    "failures": 0,
    "spend": 0.0123,
    "accuracy": 0.75,
}


def test_a_training_record_is_the_line_the_job_log_has():
    line = format_progress(TRAINING)
    assert line == "step 25/26, loss 0.6123, lr 2.00e-04, 5120 tokens/s, ETA 2.2 min"
    assert re.fullmatch(
        r"step (\d+)/26, loss [\d.]+, lr [\d.e+-]+, \d+ tokens/s, ETA [\d.]+ (s|min)", line
    )


def test_a_generation_record_for_a_tab():
    line = format_progress(GENERATION, sep=" · ")
    assert line == "28/28 done · spent $0.0123 · teacher accuracy so far 75.0%"
    assert format_progress({**GENERATION, "failures": 2}).startswith("28/28 done, 2 failed, ")
    assert format_progress(None) == format_progress({}) == NO_PROGRESS


def test_is_last_for_steps_and_for_items():
    assert is_last({"step": 3, "total": 3}) and not is_last({"step": 2, "total": 3})
    assert is_last({"done": 2, "failures": 1, "total": 3})
    assert not is_last({"done": 2, "total": 3}) and not is_last({"step": 1})


def test_the_throttle_lets_the_first_the_last_and_one_per_interval_through():
    now = [100.0]
    throttle = Throttle(5.0, clock=lambda: now[0])
    seen = []
    for t, last in ((100, False), (101, False), (104.9, False), (105, False), (106, True)):
        now[0] = t
        seen.append(throttle(last))
    assert seen == [True, False, False, True, True]


def test_a_progress_printer_writes_the_first_and_the_last_record():
    lines: list[str] = []
    show = progress_printer(lines.append, 3600)
    for step in (1, 2, 3):
        show({"step": step, "total": 3, "loss": 1.0})
    assert lines == ["step 1/3, loss 1.0000", "step 3/3, loss 1.0000"]
