"""Tests of the background job runner with real detached subprocesses (`rtdemo jobs _sleep`).

The fake workload sleeps `--steps` times, writing a progress record per step; a resumed one
continues after its last record. Heartbeats every 0.2 s here (2 s in real use). No test asserts
how long anything took: each waits (`wait_for`, 60 s) for the state it needs, and a job that must
still be running when it is acted on has `LONG` steps.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from rtdemo.cli import jobs as jobs_commands
from rtdemo.errors import UserError
from rtdemo.jobs import processes as job_processes
from rtdemo.jobs.files import last_progress, read_progress, tail_log
from rtdemo.jobs.processes import pid_alive
from rtdemo.jobs.records import Job, fetch_job, uses_torch
from rtdemo.jobs.runner import (
    STALE_ERROR,
    active_jobs_of,
    cancel_job,
    check_argv,
    fair_order,
    get_job,
    list_jobs,
    queue_position,
    refresh_stale,
    resume_job,
    running_torch_job,
    start_job,
    torch_queue,
)
from rtdemo.workspace.store import Store, workspace_path
from tests.helpers import kill_job_processes, wait_for

REPO = Path(__file__).resolve().parents[2]
KEY = "RTDEMO_TEST_KEY"
#: Steps of a job that must still be running when the test acts on it (cancels it, say): at 0.1 s
#: a step, it would take over 15 minutes to end by itself, however slow the machine is.
LONG = 10_000
T = TypeVar("T")


def sleeper(steps: int, seconds: float = 0.1, *extra: str) -> list[str]:
    """The argv of the fake workload."""
    return ["jobs", "_sleep", "--steps", str(steps), "--seconds", str(seconds), *extra]


def status(store: Store, job_id: int) -> str:
    """The recorded status, read without refreshing (so the test does not advance anything)."""
    return store.read("SELECT status FROM jobs WHERE id = ?", (job_id,))[0][0]


def done_steps(job: Job) -> list[int]:
    return [record["done"] for record in read_progress(job)]


@pytest.fixture
def workspace(monkeypatch) -> Iterator[Path]:
    """The test's workspace ($RTDEMO_HOME); every job still running at the end is killed."""
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    monkeypatch.delenv(KEY, raising=False)
    path = workspace_path(None)
    yield path
    kill_job_processes(path)


@pytest.fixture
def store(workspace: Path) -> Iterator[Store]:
    with Store(workspace) as opened:
        yield opened


# Without subprocesses ---------------------------------------------------------------------


def test_argv_that_carries_a_secret_is_refused(store):
    for argv in (
        ["--api-key", "x"],
        ["--hf-token=abc"],
        ["--token"],
        ["sk-" + "abcdefghijklmnop1234"],
    ):
        with pytest.raises(ValueError, match="must not carry secrets"):
            check_argv(argv)
    check_argv(["generate", "--max-tokens", "128", "--task", "coin_flip"])
    with pytest.raises(ValueError):
        start_job(store, "generate", ["generate", "--openai-api-key", "x"])
    assert store.read("SELECT COUNT(*) FROM jobs") == [(0,)]


def _job_at(run_dir: Path) -> Job:
    run_dir.mkdir(parents=True)
    return Job(1, "local", None, "generate", "running", [], [], None, None, run_dir, None, False,
               "2026-01-01T00:00:00+00:00", None, None)  # fmt: skip


def test_progress_readers_tolerate_a_half_written_line(tmp_path):
    job = _job_at(tmp_path / "run")
    assert read_progress(job) == [] and last_progress(job) is None and tail_log(job) == ""
    padding = "x" * 200
    lines = [json.dumps({"time": i, "done": i, "pad": padding}) for i in range(1, 501)]
    (job.run_dir / "progress.jsonl").write_text("\n".join(lines) + '\n{"time": 501, "do')
    assert [r["done"] for r in read_progress(job)] == list(range(1, 501))
    assert last_progress(job)["done"] == 500  # from the file's last 64 KiB only
    (job.run_dir / "log.txt").write_text("".join(f"line {i}\n" for i in range(1000)))
    assert tail_log(job, 3) == "line 997\nline 998\nline 999"


def test_register_adds_the_jobs_group_without_the_hidden_command():
    parser = argparse.ArgumentParser(prog="rtdemo")
    jobs_commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["jobs", "cancel", "3", "--wait", "--workspace", "/tmp/w"])
    assert (args.func, args.id, args.wait, args.workspace) == (
        jobs_commands.cmd_cancel,
        3,
        True,
        Path("/tmp/w"),
    )
    assert parser.parse_args(["jobs", "_sleep", "--job-id", "4"]).func is jobs_commands.cmd_sleep
    group = parser._subparsers._group_actions[0].choices["jobs"]
    assert "_sleep" not in group.format_help() and "SUPPRESS" not in group.format_help()


# Real subprocesses ------------------------------------------------------------------------


@pytest.mark.slow
def test_progress_arrives_while_the_parent_works(store):
    # A long job, watched until three different progress counts and three heartbeats were seen
    # while it runs (whatever the machine's speed), then cancelled; a short one runs to its end.
    job = start_job(store, "generate", sleeper(LONG, 0.1))
    assert job.status == "running" and job.pid and job.run_dir.name == f"{job.id}-generate"
    seen: set[int] = set()
    heartbeats: set[float] = set()

    def watched_enough() -> bool:
        sum(range(20_000))  # the parent is busy with its own things meanwhile
        current = get_job(store, job.id)
        assert not current.ended, f"the job ended before progress was seen: {seen}"
        seen.add(len(read_progress(current)))
        heartbeats.add(current.heartbeat_at)
        return len(seen - {0}) >= 3 and len(heartbeats - {None}) >= 3

    wait_for(watched_enough, what="three progress counts and heartbeats", every=0.05)
    assert cancel_job(store, job.id, wait=True).status == "cancelled"

    short = start_job(store, "generate", sleeper(8, 0.05))
    done = wait_for(lambda: (j := get_job(store, short.id)).ended and j, what="the short job")
    assert done.status == "done" and done.error is None and done.started_at and done.ended_at
    records = read_progress(done)
    assert [r["done"] for r in records] == list(range(1, 9))
    assert all(r["total"] == 8 for r in records)
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    assert last_progress(done) == records[-1]
    wait_for(lambda: not pid_alive(done.pid), what="the process to exit")  # it ends after saying so


@pytest.mark.slow
def test_job_survives_its_parent_exiting(workspace, store):
    code = (
        "import sys; from pathlib import Path; from rtdemo.workspace.store import Store; "
        "from rtdemo.jobs.runner import start_job; "
        f"job = start_job(Store(Path(sys.argv[1])), 'generate', {sleeper(6, 0.15)!r}); "
        "print(job.id)"
    )
    parent = subprocess.run(
        [sys.executable, "-c", code, str(workspace)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert parent.returncode == 0, parent.stderr
    job = get_job(store, int(parent.stdout))
    assert job.status == "running"
    assert job.pid not in job_processes._CHILDREN  # not ours: the parent's
    assert pid_alive(job.pid, job.id), "the job died with its parent"
    wait_for(lambda: status(store, job.id) == "done", what="the orphaned job to finish")
    assert done_steps(job) == list(range(1, 7))
    wait_for(lambda: not pid_alive(job.pid, job.id), what="the process to exit")


@pytest.mark.slow
def test_cancel_stops_the_job_cleanly(store):
    job = start_job(store, "generate", sleeper(LONG, 0.1))
    wait_for(lambda: len(read_progress(job)) >= 2, what="progress")
    job = cancel_job(store, job.id, wait=True, grace=10)
    assert job.status == "cancelled" and job.cancel_requested and job.ended_at
    assert not pid_alive(job.pid)  # gone: nothing more can be written
    steps = done_steps(job)
    assert steps == list(range(1, len(steps) + 1)) and 2 <= len(steps) < LONG
    assert "cancelled after" in tail_log(job)  # it stopped at its own check, not by a signal
    with pytest.raises(UserError, match=f"job {job.id} already ended \\(cancelled\\)"):
        cancel_job(store, job.id)


@pytest.mark.slow
def test_sigterm_is_a_cancel_and_a_job_that_ignores_cancel_is_killed(store):
    polite = start_job(store, "generate", sleeper(LONG, 0.1))
    stubborn = start_job(store, "generate", sleeper(LONG, 0.1, "--ignore-cancel"))
    wait_for(lambda: read_progress(polite) and read_progress(stubborn), what="progress")

    os.killpg(polite.pid, signal.SIGTERM)
    wait_for(lambda: status(store, polite.id) == "cancelled", what="SIGTERM to cancel the job")
    assert "cancelled after" in tail_log(polite)

    stopped = cancel_job(store, stubborn.id, wait=True, grace=0.5)  # SIGTERM, then SIGKILL
    assert stopped.status == "cancelled" and not pid_alive(stubborn.pid)
    assert "cancelled after" not in tail_log(stubborn)  # killed, as it never looked
    assert len(done_steps(stubborn)) < LONG  # killed: it did not run to its end meanwhile


@pytest.mark.slow
def test_killed_job_is_found_stale_and_resumes_where_it_stopped(store):
    job = start_job(store, "generate", sleeper(12, 0.1))
    wait_for(lambda: len(read_progress(job)) >= 3, what="progress")
    os.kill(job.pid, signal.SIGKILL)
    # Dead, but its heartbeat is younger than an hour: not stale yet.
    assert refresh_stale(store, stale_after=3600) == []
    assert status(store, job.id) == "running"
    assert wait_for(lambda: refresh_stale(store, stale_after=2.0), what="stale") == [job.id]
    failed = get_job(store, job.id)
    assert failed.status == "failed" and failed.error == STALE_ERROR
    before = read_progress(job)

    resumed = resume_job(store, job.id)
    assert (resumed.id, resumed.run_dir, resumed.status) == (job.id, job.run_dir, "running")
    assert resumed.error is None and resumed.pid != job.pid
    wait_for(lambda: status(store, job.id) == "done", what="the resumed job to finish")
    after = read_progress(job)
    assert after[: len(before)] == before  # appended, not rewritten
    assert [r["done"] for r in after] == list(range(1, 13))  # continued, not restarted
    assert "--- resumed at" in tail_log(job)
    with pytest.raises(UserError, match="already finished"):
        resume_job(store, job.id)


@pytest.mark.slow
def test_hung_job_fails_and_failures_carry_their_message(store):
    # Heartbeat once an hour: its process lives but looks hung.
    hung = start_job(store, "generate", sleeper(LONG, 0.1), env={"RTDEMO_JOB_HEARTBEAT_S": "3600"})
    broken = start_job(store, "generate", sleeper(5, 0.05, "--fail-at", "2"))
    keyless = start_job(store, "generate", sleeper(5, 0.05, "--require-env", KEY))
    wait_for(lambda: read_progress(hung), what="progress")
    # Its heartbeat grows older than dead_after while its process lives: found hung, and killed.
    found: list[int] = []

    def hung_found() -> bool:
        found.extend(refresh_stale(store, stale_after=60, dead_after=0.5))
        return hung.id in found

    wait_for(hung_found, what="the hung job to be found")
    assert get_job(store, hung.id).error == STALE_ERROR
    wait_for(lambda: not pid_alive(hung.pid), what="the hung job to be killed")
    wait_for(lambda: status(store, broken.id) == status(store, keyless.id) == "failed", what="ends")
    assert get_job(store, broken.id).error == "RuntimeError: failing at step 2 as asked"
    assert get_job(store, keyless.id).error == f"{KEY} is not set"  # a UserError, verbatim
    assert done_steps(broken) == [1, 2]


@pytest.mark.slow
def test_job_that_exits_before_starting_fails_with_its_reason(store):
    job = start_job(store, "generate", ["jobs", "_sleep", "--bogus"])
    failed = wait_for(lambda: (j := get_job(store, job.id)).ended and j, what="the failure")
    assert failed.status == "failed"
    assert failed.error.startswith("the job exited before it started: ")
    assert "unrecognized arguments: --bogus" in failed.error


@pytest.mark.slow
def test_resume_asks_for_the_key_again_and_the_key_is_stored_nowhere(workspace, store):
    canary = f"sk-canary-{uuid.uuid4().hex}"
    experiment = store.create_experiment("canary", task="coin_flip")
    job = start_job(
        store,
        "generate",
        sleeper(LONG, 0.05, "--require-env", KEY),
        experiment_id=experiment.id,
        env={KEY: canary},
        env_names=[KEY],
    )
    assert job.env_names == [KEY] and job.experiment_id == experiment.id
    wait_for(lambda: len(read_progress(job)) >= 2, what="progress")
    assert last_progress(job)["env_ok"] is True  # the child has the key
    cancel_job(store, job.id, wait=True)

    with pytest.raises(UserError, match=f"this job needs {KEY} again \\(keys are never stored\\)"):
        resume_job(store, job.id)
    with pytest.raises(UserError, match="needs"):
        resume_job(store, job.id, env={KEY: ""})
    resume_job(store, job.id, env={KEY: canary})
    wait_for(lambda: len(read_progress(job)) >= 5, what="progress after resume")
    assert last_progress(job)["env_ok"] is True
    cancel_job(store, job.id, wait=True)
    assert [j.id for j in list_jobs(store, experiment_id=experiment.id)] == [job.id]

    files = [p for p in workspace.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files) and any(
        p.suffix == ".sqlite3" for p in files
    )
    assert any(p.name == "log.txt" for p in files) and any(p.name == "cancel" for p in files)
    leaks = [p for p in files if canary.encode() in p.read_bytes()]
    assert leaks == [], f"the key leaked into {leaks}"


@pytest.mark.slow
def test_an_owner_cannot_see_cancel_or_resume_anothers_job(store):
    job = start_job(store, "generate", sleeper(LONG, 0.1), owner="alice")
    for owner in ("bob", "local"):
        for act in (get_job, cancel_job, resume_job):
            with pytest.raises(UserError, match=f"^no job {job.id}$"):
                act(store, job.id, owner)
        assert list_jobs(store, owner=owner) == []
    assert [j.id for j in list_jobs(store, owner="alice")] == [job.id]
    theirs = get_job(store, job.id, "alice")
    assert theirs.status == "running" and not theirs.cancel_requested
    assert cancel_job(store, job.id, "alice", wait=True).status == "cancelled"


@pytest.mark.slow
def test_torch_jobs_run_one_at_a_time_and_the_queue_advances_by_itself(store):
    first = start_job(store, "train", sleeper(6, 0.1))
    second = start_job(store, "evaluate", sleeper(3, 0.1))
    third = start_job(store, "train", sleeper(3, 0.1))
    other = start_job(store, "generate", sleeper(3, 0.1))
    assert first.status == "running" and other.status == "running"  # generation is not queued
    assert (second.status, second.pid, third.status) == ("queued", None, "queued")
    assert cancel_job(store, third.id).status == "cancelled"  # a queued job: at once

    # Poll without refresh_stale: only the finishing first job may start the second.
    wait_for(lambda: status(store, first.id) == "done", what="the first torch job")
    wait_for(lambda: status(store, second.id) == "done", what="the queued job to run")
    assert read_progress(second)[0]["time"] >= read_progress(first)[-1]["time"]
    assert status(store, third.id) == "cancelled" and read_progress(third) == []
    assert not (third.run_dir / "log.txt").exists()
    assert status(store, other.id) == "done"


def _queued(job_id: int, key: str, owner: str | None = None) -> Job:
    return Job(job_id, owner or key, None, "train", "queued", ["train"], [], None, None,
               Path("runs") / f"{job_id}-train", None, False, "now", None, None, key)  # fmt: skip


def test_queued_torch_jobs_take_turns_across_keys_and_keep_their_order_within_one():
    # Client a (three owner ids, one key) queued first; b and c (never had a turn) come later.
    queued = [_queued(1, "a"), _queued(2, "a"), _queued(3, "a"), _queued(4, "b"), _queued(5, "c")]
    # a runs its turn 7 now: the keys that never had one go first, oldest queued first.
    assert [j.id for j in fair_order(queued, {"a": 7})] == [4, 5, 1, 2, 3]
    # b had its turn long ago (3), c never: c, then b (older turn than a's), then a, b, a...
    queued += [_queued(6, "b"), _queued(7, "a")]
    order = fair_order(queued, {"a": 7, "b": 3})
    assert [j.id for j in order] == [5, 4, 1, 6, 2, 3, 7]
    # Nothing ran yet: first come, first served across keys, then round-robin.
    assert [j.id for j in fair_order(queued, {})] == [1, 4, 5, 2, 6, 3, 7]
    # A job with no key (an old row) counts for its owner.
    assert [j.id for j in fair_order([_queued(1, "", "x"), _queued(2, "y")], {"x": 1})] == [2, 1]


@pytest.mark.slow
def test_fresh_ids_from_one_client_do_not_delay_another_visitor_beyond_its_turn(store):
    """The issue's case: one client with three fresh owner ids queues six training jobs behind the
    running one; another visitor's training, queued after all of them, starts right after the
    running job (its fair turn), not after the six."""
    client = "client-0123456789abcdef0123"
    owners = [f"anon-{i:016x}" for i in range(3)]
    running = start_job(store, "train", sleeper(LONG, 0.1), owner=owners[0], fair_key=client)
    theirs = [
        start_job(store, "train", sleeper(2, 0.05), owner=owner, fair_key=client)
        for owner in owners
        for _ in range(2)
    ]
    visitor = start_job(store, "train", sleeper(2, 0.05), owner="hf:bea", fair_key="hf:bea")
    assert running.status == "running" and running.turn == 1
    assert all(j.status == "queued" for j in [*theirs, visitor])
    assert active_jobs_of(store, client) == 7 and active_jobs_of(store, "hf:bea") == 1
    assert [j.id for j in torch_queue(store)] == [visitor.id, *(j.id for j in theirs)]
    assert queue_position(store, visitor.id) == (1, 7)
    assert queue_position(store, theirs[0].id) == (2, 7)
    assert queue_position(store, running.id) is None

    cancel_job(store, running.id, owners[0])  # its end starts the next job (no refresh here)
    wait_for(lambda: status(store, visitor.id) != "queued", what="the visitor's job to start")
    assert [status(store, j.id) for j in theirs[1:]] == ["queued"] * 5
    assert fetch_job(store, visitor.id).turn == 2
    # Then the client's jobs, oldest first, one after the other.
    wait_for(lambda: status(store, theirs[-1].id) == "done", what="the client's jobs", timeout=120)
    started = [read_progress(fetch_job(store, j.id))[0]["time"] for j in [visitor, *theirs]]
    assert started == sorted(started)


@pytest.mark.slow
def test_cli_shows_a_queued_torch_jobs_place_in_line(workspace, store, run_cli):
    running = start_job(store, "train", sleeper(LONG, 0.1))
    first = start_job(store, "evaluate", sleeper(1, 0.1))
    second = start_job(store, "train", sleeper(1, 0.1))
    ws = ["--workspace", str(workspace)]
    out = run_cli("jobs", "list", *ws)
    assert f"{second.id:>4}  train      queued 2/2" in out.stdout, out.stdout + out.stderr
    assert f"{running.id:>4}  train      running " in out.stdout
    listed = json.loads(run_cli("jobs", "list", "--json", *ws).stdout)
    places = {job["id"]: job["queue"] for job in listed}
    in_line = {"position": 1, "of": 2}, {"position": 2, "of": 2}
    assert places == {running.id: None, first.id: in_line[0], second.id: in_line[1]}
    out = run_cli("jobs", "show", first.id, *ws)
    assert "in line    1 of 2 queued for the torch slot" in out.stdout, out.stdout


def test_a_generation_with_a_local_model_is_a_torch_workload():
    assert uses_torch("train", []) and uses_torch("evaluate", ["evaluate"])
    assert uses_torch("generate", ["generate", "--teacher", "hf", "--model", "gpt2"])
    assert uses_torch("generate", ["generate", "--teacher=hf"])
    for teacher in ("builtin", "openai", "replay"):
        assert not uses_torch("generate", ["generate", "--teacher", teacher])
    assert not uses_torch("generate", ["generate", "--model", "hf"])  # the value of another flag
    assert not uses_torch("push", ["push", "--teacher", "hf"])


@pytest.mark.slow
def test_a_local_model_teacher_waits_for_training_and_other_generations_do_not(store):
    training = start_job(store, "train", sleeper(6, 0.1))
    local = start_job(store, "generate", sleeper(3, 0.1, "--teacher", "hf"))
    api = start_job(store, "generate", sleeper(3, 0.1, "--teacher", "openai"))
    assert (training.status, local.status, api.status) == ("running", "queued", "running")
    assert running_torch_job(store).id == training.id
    wait_for(lambda: status(store, local.id) == "done", what="the queued generation to run")
    assert read_progress(local)[0]["time"] >= read_progress(training)[-1]["time"]
    assert running_torch_job(store) is None


@pytest.mark.slow
def test_cli_lists_shows_cancels_and_resumes(workspace, store, run_cli):
    ws = ["--workspace", str(workspace)]
    job = start_job(store, "generate", sleeper(LONG, 0.1), env={KEY: "k"}, env_names=[KEY])
    wait_for(lambda: read_progress(job), what="progress")

    out = run_cli("jobs", "list", "--json", *ws)
    assert out.returncode == 0, out.stderr
    [listed] = json.loads(out.stdout)
    assert (listed["id"], listed["status"], listed["kind"]) == (job.id, "running", "generate")
    assert listed["last_progress"]["total"] == LONG
    out = run_cli("jobs", "list", "--status", "done", "--json", *ws)
    assert json.loads(out.stdout) == []
    out = run_cli("jobs", "show", job.id, "--json", *ws)
    shown = json.loads(out.stdout)
    assert shown["argv"] == sleeper(LONG, 0.1) and shown["env_names"] == [KEY]
    assert isinstance(shown["log_tail"], str) and shown["last_progress"]["done"] >= 1

    out = run_cli("jobs", "cancel", job.id, "--wait", *ws)
    assert out.returncode == 0 and f"job {job.id} cancelled" in out.stdout, out.stderr
    out = run_cli("jobs", "resume", job.id, *ws)
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: this job needs {KEY} again (keys are never stored)")
    out = run_cli("jobs", "resume", job.id, *ws, env={KEY: "k"})
    assert out.returncode == 0 and f"job {job.id} resumed" in out.stdout, out.stderr
    out = run_cli("jobs", "cancel", job.id, *ws)
    assert out.returncode == 0 and "cancel requested" in out.stdout
    wait_for(lambda: status(store, job.id) == "cancelled", what="the cancel")

    out = run_cli("jobs", "list", *ws)
    assert f"{job.id:>4}  generate   cancelled" in out.stdout
    out = run_cli("jobs", "show", job.id, *ws)
    assert f"job {job.id} (generate): cancelled" in out.stdout and "jobs _sleep" in out.stdout
    out = run_cli("jobs", "cancel", job.id, *ws)
    assert out.returncode == 2 and "already ended (cancelled)" in out.stderr
    out = run_cli("jobs", "show", "999", *ws)
    assert (out.returncode, out.stderr.strip()) == (2, "error: no job 999")
