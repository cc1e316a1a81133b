"""`rtdemo train` and `rtdemo evaluate` for real: subprocesses, the tiny student, background jobs.

Each test builds its own experiment (the built-in teacher on ~20 synthetic Coin Flip questions)
in the test's workspace ($RTDEMO_HOME) and trains the tiny offline student for a few steps. One
torch workload at a time: the test process only waits, and the job queue keeps training jobs
apart. Children use one torch thread (OMP_NUM_THREADS=1) and beat every 0.2 s.

    .venv/bin/python -m pytest tests/training/test_train_cli.py -m slow
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from rtdemo.errors import UserError
from rtdemo.jobs.files import last_progress, read_progress, tail_log
from rtdemo.jobs.processes import pid_alive
from rtdemo.jobs.records import ENDED, Job
from rtdemo.jobs.runner import STALE_ERROR, cancel_job, get_job, refresh_stale, resume_job
from rtdemo.training.runs import create_run, finish_run, get_run, latest_evaluations
from rtdemo.workspace.store import Store, workspace_path
from tests.helpers import kill_job_processes, wait_for

pytestmark = pytest.mark.slow

T = TypeVar("T")
SIZE = 30  # synthetic questions: 21 train (paper_split 70/30), 9 test
TRAIN_Q, TEST_Q = 21, 9
TINY = ("--max-steps", "3", "--batch-size", "4")
STEPS = 100  # the cancelled and resumed job's max steps
PROGRESS_KEYS = {"step", "total", "loss", "learning_rate", "tokens_per_second", "eta"}


@pytest.fixture
def workspace(monkeypatch) -> Iterator[Path]:
    """The test's workspace; every job process still alive at the end is killed."""
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # children: one torch thread (2-core machine)
    path = workspace_path(None)
    yield path
    kill_job_processes(path)


@pytest.fixture
def store(workspace: Path) -> Iterator[Store]:
    with Store(workspace) as opened:
        yield opened


@pytest.fixture
def cli(run_cli, workspace):
    """`rtdemo ARGS` in a subprocess of the test's workspace; fails on an unexpected exit code."""

    def run(*args: str, expect: int = 0, timeout: float = 180) -> subprocess.CompletedProcess:
        done = run_cli(*args, timeout=timeout)
        assert done.returncode == expect, (
            f"rtdemo {' '.join(args)} exited {done.returncode}, expected {expect}\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
        return done

    return run


def make_experiment(cli, name: str = "coin", generate: bool = True) -> None:
    """An experiment of SIZE synthetic Coin Flip questions, with builtin rationales for train."""
    source = ("--source", "synthetic", "--size", str(SIZE))
    cli("experiments", "create", name, "--task", "coin_flip", *source)
    if generate:
        out = cli("generate", "--experiment", name, "--teacher", "builtin", *source).stdout
        assert f"{TRAIN_Q}/{TRAIN_Q} samples done" in out


def job_id_of(stdout: str) -> int:
    match = re.search(r"job (\d+) \(train\)", stdout)
    assert match, stdout
    return int(match.group(1))


def status(store: Store, job_id: int) -> str:
    """The recorded status, read without refreshing anything."""
    return store.read("SELECT status FROM jobs WHERE id = ?", (job_id,))[0][0]


def steps(job: Job) -> list[int]:
    return [r["step"] for r in read_progress(job) if "step" in r]


def train_result(store: Store, run: str, experiment: str = "coin") -> dict:
    folder = get_run(store, store.get_experiment(experiment), run).output_dir
    return json.loads((folder / "train_result.json").read_text())


def start_training(cli, run: str, fmt: str = "cot", max_steps: int = 200) -> int:
    out = cli(
        "train", "--experiment", "coin", "--run", run, "--format", fmt,
        "--max-steps", str(max_steps), "--batch-size", "4", "--background",
    ).stdout  # fmt: skip
    return job_id_of(out)


# Foreground ---------------------------------------------------------------------------------


def test_generate_train_both_formats_and_evaluate_in_the_foreground(cli, store):
    make_experiment(cli)
    for run, fmt in (("cot", "cot"), ("vanilla", "vanilla")):
        out = cli("train", "--experiment", "coin", "--run", run, "--format", fmt, *TINY).stdout
        assert re.search(rf"trained {run}: 3 steps in \d+ s \((bf16|fp32)\)", out), out
        assert re.search(r"step 3/3, loss \d", out), out  # progress is printed
        result = train_result(store, run)
        assert (result["global_step"], result["stopped"], result["kind"]) == (3, False, "causal")
        assert Path(result["final_dir"], "config.json").is_file()
    # The cot run trains on kept rationales only (the builtin teacher errs on some), vanilla on all.
    exp = store.get_experiment("coin")
    cot, vanilla = get_run(store, exp, "cot"), get_run(store, exp, "vanilla")
    assert (cot.status, vanilla.status) == ("trained", "trained")
    assert 0 < cot.train_examples < vanilla.train_examples == TRAIN_Q

    for run in ("cot", "vanilla"):
        out = cli(
            "evaluate", "--experiment", "coin", "--run", run,
            "--batch-size", "8", "--max-total-length", "256",
        ).stdout  # fmt: skip
        pattern = (
            rf"{run} on {TEST_Q} test questions: accuracy [\d.]+%, contains answer [\d.]+%, "
            r"correct format [\d.]+%, complete (n/a|[\d.]+%); predictions in (\S+)"
        )
        match = re.search(pattern, out)
        assert match, out
        predictions = Path(match.group(2)) / "predictions.jsonl"
        rows = [json.loads(line) for line in predictions.read_text().splitlines()]
        assert len(rows) == TEST_Q

    stored = latest_evaluations(store, exp)
    assert set(stored) == {"cot", "vanilla"}
    for entry in stored.values():
        metrics = entry["metrics"]
        assert metrics["count"] == TEST_Q
        for key in ("accuracy", "contains_answer", "correct_format"):
            assert 0.0 <= metrics[key] <= 1.0
        assert Path(entry["predictions"]).is_file()
    assert store.read("SELECT COUNT(*) FROM jobs") == [(0,)]  # foreground: no job rows


def test_evaluating_an_untrained_run_says_what_to_do(cli):
    make_experiment(cli, generate=False)
    done = cli("evaluate", "--experiment", "coin", "--run", "nothing", expect=2)
    assert "has no run 'nothing'" in done.stderr and "Traceback" not in done.stderr


# Bad settings fail before a job starts --------------------------------------------------------


@pytest.fixture
def tiny_t5(tmp_path) -> Path:
    import torch

    from tests.tiny_models import build_tiny_seq2seq

    torch.set_num_threads(1)
    return build_tiny_seq2seq(tmp_path / "t5")


BAD = {
    "unknown model": (
        ["--student", "no/such-model"],
        ["'no/such-model' needs network or a local copy", "model folder", "'tiny'"],
    ),
    "batch size 0": (["--batch-size", "0"], ["--batch-size must be >= 1, got 0", "e.g. 8"]),
    "no kept samples": ([], ["no kept samples", "rtdemo generate", "--format vanilla"]),
    "seq2seq with a causal recipe": (
        ["--student", "{t5}", "--recipe", "tiny"],
        ["is a seq2seq model", "'tiny' recipe is for causal", "--recipe paper"],
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_settings_fail_before_a_job_starts(cli, store, case, request):
    flags, messages = BAD[case]
    if "{t5}" in flags:
        t5 = request.getfixturevalue("tiny_t5")
        flags = [str(t5) if f == "{t5}" else f for f in flags]
    make_experiment(cli, generate=case != "no kept samples")
    done = cli(
        "train", "--experiment", "coin", "--run", "bad", "--format", "cot", *flags, "--background",
        expect=2,
    )  # fmt: skip
    assert done.stderr.startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for message in messages:
        assert message in done.stderr, done.stderr
    assert store.read("SELECT COUNT(*) FROM jobs") == [(0,)]
    assert store.read("SELECT COUNT(*) FROM student_runs") == [(0,)]
    assert not (store.workspace / "runs").exists() or not any((store.workspace / "runs").iterdir())


def test_an_already_trained_run_is_refused_before_a_job_starts(cli, store):
    make_experiment(cli)
    exp = store.get_experiment("coin")
    run = create_run(store, exp, "done", "cot", 1, "tiny", "full", 10, {})
    finish_run(store, run, {"global_step": 3})
    args = ("train", "--experiment", "coin", "--run", "done", "--format", "cot", "--background")
    done = cli(*args, expect=2)
    assert "run 'done' of coin is already trained: pick another --run name" in done.stderr
    assert store.read("SELECT COUNT(*) FROM jobs") == [(0,)]


def test_a_run_name_that_is_not_one_folder_is_refused_before_anything_starts(cli, store):
    make_experiment(cli, generate=False)
    outside = store.workspace / "runs" / "students" / "x"  # where '../x' would have landed
    for name in ("../x", "..", "a/b", "has space"):
        for background in ([], ["--background"]):
            done = cli(
                "train", "--experiment", "coin", "--run", name, "--format", "vanilla",
                *TINY, *background, expect=2,
            )  # fmt: skip
            assert done.stderr.startswith(f"error: invalid run name {name!r}: use 1-64 "), name
            assert "letters, digits, '-', '_' or '.' (not only dots), e.g. 'cot-d1'" in done.stderr
            assert "Traceback" not in done.stderr
    assert store.read("SELECT COUNT(*) FROM jobs") == [(0,)]
    assert store.read("SELECT COUNT(*) FROM student_runs") == [(0,)]
    runs = store.workspace / "runs"
    assert not outside.exists() and (not runs.exists() or not any(runs.rglob("*")))
    # The core refuses it too, whoever calls it (the pipeline, the app).
    with pytest.raises(UserError, match=r"invalid run name '\.\./x'"):
        create_run(store, store.get_experiment("coin"), "../x", "cot", 1, "tiny", "full", 1, {})


def test_bad_evaluation_settings_fail_before_loading_anything(cli):
    done = cli("evaluate", "--experiment", "coin", "--run", "x", "--batch-size", "0", expect=2)
    assert "--batch-size must be >= 1 (got 0)" in done.stderr and "Traceback" not in done.stderr


# Background jobs ----------------------------------------------------------------------------


def test_a_training_job_is_watched_cancelled_within_a_step_and_resumed(cli, store):
    make_experiment(cli)
    # Enough steps to still be running when the cancel comes (it comes at step 3).
    job_id = start_training(cli, "cot", max_steps=STEPS)
    job = get_job(store, job_id)
    assert (job.kind, job.status) == ("train", "running")

    # ---- watch: progress lines with step, total, loss, learning rate, tokens/s and ETA ---------
    first = wait_for(lambda: (p := last_progress(job)) and p["step"] >= 3 and p, 120, "step 3")
    assert set(first) >= PROGRESS_KEYS and first["total"] == STEPS
    assert first["loss"] > 0 and first["eta"] > 0 and first["tokens_per_second"] > 0
    seen = steps(job)
    assert seen == list(range(1, len(seen) + 1))  # one line per step, in order

    # ---- cancel: it stops at the next step and saves a checkpoint there ------------------------
    cancel_job(store, job_id)
    at_cancel = steps(job)[-1]
    wait_for(lambda: get_job(store, job_id).ended, 120, "the job to stop")
    job = get_job(store, job_id)
    assert job.status == "cancelled", (job.status, job.error, tail_log(job))
    stopped_at = steps(job)[-1]
    assert at_cancel <= stopped_at <= at_cancel + 2, (at_cancel, stopped_at)
    assert stopped_at < STEPS
    result = train_result(store, "cot")
    assert result["stopped"] and result["final_dir"] is None
    assert result["last_checkpoint"].endswith(f"checkpoint-{stopped_at}")
    assert get_run(store, store.get_experiment("coin"), "cot").status != "trained"
    assert "stopped at step" in tail_log(job)

    # ---- resume: same job, from the last checkpoint, to the full global step ------------------
    resumed = resume_job(store, job_id)
    assert resumed.id == job_id and resumed.status == "running"
    wait_for(lambda: get_job(store, job_id).ended, 300, "the resumed job to end")
    job = get_job(store, job_id)
    assert job.status == "done", (job.status, job.error, tail_log(job))
    result = train_result(store, "cot")
    assert result["resumed_from_step"] == stopped_at > 0
    assert (result["global_step"], result["max_steps"], result["stopped"]) == (STEPS, STEPS, False)
    after = steps(job)[steps(job).index(stopped_at) + 1 :]
    assert after == list(
        range(stopped_at + 1, STEPS + 1)
    )  # the global step continued, not restarted
    assert get_run(store, store.get_experiment("coin"), "cot").status == "trained"


def test_a_training_job_logs_a_progress_line_every_25_steps_and_at_the_end(cli, store):
    make_experiment(cli)
    job_id = start_training(cli, "vanilla", "vanilla", max_steps=26)
    wait_for(lambda: get_job(store, job_id).ended, 300, "the job to end")
    job = get_job(store, job_id)
    log = tail_log(job, 200)
    assert job.status == "done", (job.status, job.error, log)
    assert "training run vanilla (vanilla, tiny, full) on 21 examples" in log
    line = r"\] step (\d+)/26, loss [\d.]+, lr [\d.e+-]+, \d+ tokens/s, ETA [\d.]+ (s|min)$"
    logged = [int(m.group(1)) for m in re.finditer(line, log, re.MULTILINE)]
    assert logged == [1, 25, 26], log  # the first step, every 25th and the last; no others
    assert steps(job) == list(range(1, 27))  # progress.jsonl still has every step


def test_a_sigkilled_training_job_is_shown_as_failed(cli, store):
    make_experiment(cli)
    job_id = start_training(cli, "cot", max_steps=200)
    job = get_job(store, job_id)
    wait_for(lambda: (p := last_progress(job)) and p["step"] >= 2, 120, "training to start")
    os.kill(job.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(job.pid, job_id), 10, "the process to die")
    assert status(store, job_id) == "running"  # nobody told the store

    # Its heartbeat stops: once older than stale_after, with no process, the job failed.
    wait_for(lambda: job_id in refresh_stale(store, stale_after=1.0), 20, "stale detection")
    job = get_job(store, job_id)
    assert (job.status, job.error) == ("failed", STALE_ERROR)
    shown = cli("jobs", "show", str(job_id), "--json").stdout
    assert json.loads(shown)["status"] == "failed"


def test_a_second_torch_job_waits_for_the_first_then_runs_alone(cli, store):
    make_experiment(cli)
    first = start_training(cli, "first", "vanilla", max_steps=40)
    out = cli(
        "train", "--experiment", "coin", "--run", "second", "--format", "cot", *TINY,
        "--background",
    ).stdout  # fmt: skip
    assert "queued behind another torch job" in out
    second = job_id_of(out)
    assert (status(store, first), status(store, second)) == ("running", "queued")

    def both_ended() -> bool:
        states = (status(store, first), status(store, second))
        assert states != ("running", "running"), "two torch jobs ran at once"
        return all(s in ENDED for s in states)

    wait_for(lambda: last_progress(get_job(store, first)), 120, "the first job's progress")
    assert status(store, second) == "queued" and not read_progress(get_job(store, second))
    wait_for(both_ended, 300, "both jobs to end")
    a, b = get_job(store, first), get_job(store, second)
    assert (a.status, b.status) == ("done", "done"), (a.error, b.error, tail_log(b))
    # The second started after the first had ended, and trained by itself.
    assert b.started_at >= a.ended_at
    assert read_progress(b)[0]["time"] > read_progress(a)[-1]["time"]
    assert train_result(store, "first")["global_step"] == 40
    assert train_result(store, "second")["global_step"] == 3
