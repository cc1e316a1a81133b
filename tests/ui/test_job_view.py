"""How a job looks in a tab: the resume note says what a resume keeps, per kind of job; a queued
torch job says its place in line, in the scheduler's order.

.venv/bin/python -m pytest tests/ui/test_job_view.py
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rtdemo.jobs.records import Job, flag_value
from rtdemo.ui.job_view import job_status, resume_note


def a_job(tmp_path: Path, kind: str, status: str = "cancelled") -> Job:
    """A job record with an empty run folder (no progress, no log) in workspace `tmp_path`."""
    run_dir = tmp_path / "runs" / f"7-{kind}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return Job(
        id=7,
        owner="local",
        experiment_id=1,
        kind=kind,
        status=status,
        argv=[kind, "--run", "cot"],
        env_names=[],
        pid=None,
        heartbeat_at=None,
        run_dir=run_dir,
        error=None,
        cancel_requested=status == "cancelled",
        created_at="2025-01-01T00:00:00+00:00",
        started_at=None,
        ended_at=None,
    )


NOTES = {
    "generate": ["Every finished sample is kept", "**Resume**", "skips them"],
    "train": ["**Resume** continues from the last checkpoint", "at each epoch", "cancelled"],
    "evaluate": ["does not continue part-way", "rtdemo jobs resume 7", "from the first"],
}


@pytest.mark.parametrize("kind", list(NOTES))
@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_stopped_job_says_what_resume_keeps_for_its_kind(tmp_path, kind, status):
    shown, _, _ = job_status(a_job(tmp_path, kind, status))
    assert f"**{status}**" in shown
    for words in NOTES[kind]:
        assert words in shown, shown
    assert "Nothing done so far is lost" not in shown  # the old promise, untrue of training


def test_only_a_stopped_job_gets_a_resume_note(tmp_path):
    for status in ("queued", "running", "done"):
        shown, _, _ = job_status(a_job(tmp_path, "train", status))
        assert resume_note(a_job(tmp_path, "train")) not in shown


def test_an_unknown_kind_promises_nothing_in_particular(tmp_path):
    assert resume_note(a_job(tmp_path, "push")) == "**Resume** runs it again."


def test_flag_value_reads_both_spellings():
    assert flag_value(["train", "--run", "cot", "--format=vanilla"], "--run") == "cot"
    assert flag_value(["train", "--run", "cot", "--format=vanilla"], "--format") == "vanilla"
    assert flag_value(["train", "--run"], "--run") is None


def test_a_queued_torch_job_shows_its_place_in_the_schedulers_order(tmp_path):
    """Visitors take turns: the place shown is the one `start_queued` will give (one ordering)."""
    from rtdemo.jobs.runner import start_queued, torch_queue
    from rtdemo.workspace.store import Store

    with Store(tmp_path) as store, store.transaction() as conn:

        def add(owner: str, key: str, status: str = "queued", turn: int | None = None) -> int:
            return conn.execute(
                "INSERT INTO jobs (owner, kind, status, argv, run_dir, created_at, fair_key, "
                "turn, heartbeat_at) VALUES (?, 'train', ?, '[]', 'runs/x', 'now', ?, ?, ?)",
                (owner, status, key, turn, time.time()),
            ).lastrowid

        add("anon-1", "client-a", "running", turn=1)  # the slot is taken
        a2, a3 = add("anon-2", "client-a"), add("anon-3", "client-a")  # the same client
        other = add("hf:bea", "hf:bea")  # another visitor, queued last
    with Store(tmp_path) as store:
        line = [j.id for j in torch_queue(store)]
        assert line == [other, a2, a3]
        jobs = {j.id: j for j in torch_queue(store)}
        assert start_queued(store) is None  # the running job holds the slot
    shown = {job_id: job_status(job)[0] for job_id, job in jobs.items()}
    assert "position 1 of 3" in shown[other] and "it is next" in shown[other]
    assert "position 2 of 3" in shown[a2] and "1 queued job(s) go before it" in shown[a2]
    assert "position 3 of 3" in shown[a3]
    assert "client-" not in "".join(shown.values())  # the key is never shown


def test_a_job_shown_in_a_tab_names_the_data_folder_not_its_server_path(tmp_path):
    from dataclasses import replace

    from rtdemo.jobs.files import LOG_NAME

    workspace = tmp_path / "data"
    run_dir = workspace / "runs" / "7-train"  # where a job's run folder is in its workspace
    run_dir.mkdir(parents=True)
    error = f"cannot write {run_dir}/checkpoint-3"
    job = replace(a_job(tmp_path, "train", "failed"), run_dir=run_dir, error=error)
    (run_dir / LOG_NAME).write_text(f"trained cot: 3 steps; model in {run_dir / 'final'}\n")
    status, _, log = job_status(job)
    assert str(workspace) not in status + log and str(tmp_path) not in status + log
    assert log == "trained cot: 3 steps; model in $RTDEMO_HOME/runs/7-train/final"
    assert "cannot write $RTDEMO_HOME/runs/7-train/checkpoint-3" in status
