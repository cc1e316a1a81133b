"""Generation against a real OpenAI-compatible HTTP server: faults, kills, bad settings, secrets."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import load_samples
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.workspace.store import Store
from tests.fakes.openai_server import FakeOpenAIServer, Faults, coin_flip_responder

KEY = "sk-test-key"
COIN = TASKS["coin_flip"].answer
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=KEY, models=["fake-model"], responder=coin_flip_responder) as s:
        yield s


def _questions(n=50):
    return generate("coin_flip", SyntheticSettings(size=200), "train")[:n]


def _generate(store, exp, server, questions, **settings):
    teacher = OpenAITeacher("fake-model", base_url=server.base_url, api_key=KEY, timeout=5)
    s = GenerationSettings(**{"samples": 4, "temperature": 0.7, "backoff": 0.01, **settings})
    return run_generation(store, exp, teacher, s, questions, COIN, None)


def test_fifty_questions_four_samples_with_twenty_percent_failures(tmp_path, server):
    server.faults = Faults(rate_limit=0.07, server_error=0.07, drop=0.06, retry_after="0", seed=3)
    questions = _questions()
    with Store(tmp_path / "ws") as store:
        exp = store.create_experiment("e", "coin_flip")
        store.add_questions(exp.id, questions)
        stats = _generate(store, exp, server, questions)  # retried until the deadline
        samples = load_samples(store, exp.id)
        assert (stats.done, stats.failed, len(samples)) == (200, 0, 200)
        assert len({(s.idx, s.sample_index) for s in samples}) == 200
        assert all(s.correct for s in samples)  # the fake teacher is always right
        assert server.by_outcome["ok"] == 50 + 200  # n=4 per call 1, one call 2 per sample
        assert server.by_outcome["rate_limit"] + server.by_outcome["server_error"] > 0
        before = server.requests_total
        stats = _generate(store, exp, server, questions)
        assert server.requests_total == before and stats.requests == 0


def _cli(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "rtdemo", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        **kwargs,
    )


def _count(db: Path, status: str = "done") -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        query = "SELECT COUNT(*) FROM samples WHERE status = ?"
        return conn.execute(query, (status,)).fetchone()[0]
    except sqlite3.OperationalError:  # the child has not created its tables yet
        return 0
    finally:
        conn.close()


GEN_ARGS = [
    "generate",
    "--task",
    "coin_flip",
    "--limit",
    "50",
    "--teacher",
    "openai",
    "--model",
    "fake-model",
    "--samples",
    "4",
    "--temperature",
    "0.7",
    "--experiment",
    "kill",
]


@pytest.mark.slow
def test_sigkill_midway_then_restart_ends_in_the_same_state(tmp_path, server):
    """The fake answers the first 100 requests and holds the rest: the child is killed with its
    8 request slots all waiting, so the kill lands at a known point, whatever the machine's speed.

    Then the store holds exactly what the 100 answers paid for: each answered call 1 is 4
    rationales, each answered call 2 one done sample, so done + calls 1 = 100; and a restart
    requests exactly the 250 - 100 calls still missing, none twice.
    """
    answered, concurrency = 100, 8
    server.hold(after=answered)
    ws = tmp_path / "ws"
    args = [*GEN_ARGS, "--base-url", server.base_url, "--workspace", ws]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtdemo", *map(str, args), "--concurrency", str(concurrency)],
        cwd=REPO,
        env={**os.environ, "OPENAI_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # All slots held means every answered request has left its slot, and generation commits
        # a reply before it frees the slot's next use: the store is settled.
        assert server.wait_held(concurrency, timeout=90), (server.held, proc.poll())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert server.requests_total == answered + concurrency
    assert server.by_endpoint == {"chat": answered + concurrency}
    assert server.by_outcome["ok"] == answered
    db = ws / "rtdemo.sqlite3"
    done, half = _count(db), _count(db, "rationale")
    assert (done + half) % 4 == 0
    calls_1 = (done + half) // 4  # each answered call 1 stored its 4 rationales
    assert done + calls_1 == answered
    # 8 workers, a question's 4 calls 2 only after its call 1: 20 to 26 calls 1 among 100.
    assert 20 <= calls_1 <= 26 and 74 <= done <= 80
    assert _count(db, "failed") == 0

    server.release()  # the held requests answer a client that is gone
    assert server.wait_idle(timeout=30)
    server.reset_counters()
    out = _cli(*args, env={"OPENAI_API_KEY": KEY})
    assert out.returncode == 0, out.stderr
    with Store(ws) as store:
        samples = load_samples(store, store.get_experiment("kill").id)
    assert len(samples) == 200 and all(s.status == "done" for s in samples)
    assert len({(s.idx, s.sample_index) for s in samples}) == 200
    # Exactly the missing calls: one call 1 (n=4) per question without rationales, one call 2
    # per sample not done; nothing answered before the kill is requested again.
    assert server.requests_total == server.by_outcome["ok"] == 250 - answered
    assert [b.get("n", 1) for b in server.bodies()].count(4) == 50 - calls_1


def test_wrong_key_is_one_clear_message_and_stores_nothing(tmp_path, server):
    ws = tmp_path / "ws"
    out = _cli(
        *GEN_ARGS,
        "--base-url",
        server.base_url,
        "--workspace",
        ws,
        env={"OPENAI_API_KEY": "sk-wrong-canary-123"},
    )
    assert out.returncode == 2
    assert "rejected the API key" in out.stderr and "Traceback" not in out.stderr
    assert "sk-wrong-canary-123" not in out.stderr + out.stdout
    assert _count(ws / "rtdemo.sqlite3") == 0 and _count(ws / "rtdemo.sqlite3", "failed") == 0


def test_unknown_model_is_one_clear_message(tmp_path, server):
    args = [a if a != "fake-model" else "no-such-model" for a in GEN_ARGS]
    out = _cli(
        *args,
        "--base-url",
        server.base_url,
        "--workspace",
        tmp_path / "ws",
        env={"OPENAI_API_KEY": KEY},
    )
    assert out.returncode == 2 and "no-such-model" in out.stderr and "Traceback" not in out.stderr
    assert _count(tmp_path / "ws" / "rtdemo.sqlite3", "failed") == 0


def test_unreachable_server_is_one_clear_message(tmp_path):
    out = _cli(
        *GEN_ARGS,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--workspace",
        tmp_path / "ws",
        "--max-attempts",
        "2",
        env={"OPENAI_API_KEY": KEY},
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "127.0.0.1:9" in out.stdout + out.stderr


def test_missing_key_says_how_to_give_one(tmp_path, server):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtdemo",
            *map(str, GEN_ARGS),
            "--base-url",
            server.base_url,
            "--workspace",
            tmp_path / "ws",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "OPENAI_API_KEY" in out.stderr


def test_exhausted_budget_stops_cleanly_and_a_higher_budget_continues(tmp_path, server):
    prices = tmp_path / "prices.yaml"
    prices.write_text("fake-model: {input: 100.0, output: 100.0}\n")
    ws = tmp_path / "ws"
    common = [*GEN_ARGS, "--base-url", server.base_url, "--workspace", ws, "--prices", prices]
    out = _cli(*common, "--budget", "0.5", env={"OPENAI_API_KEY": KEY})
    assert out.returncode == 3, out.stderr
    assert "stopped at the budget of $0.5" in out.stdout
    with Store(ws) as store:
        samples = load_samples(store, store.get_experiment("kill").id)
    assert 0 < len(samples) < 200
    assert all(s.status == "done" for s in samples)  # every paid rationale was finished
    assert sum(s.cost for s in samples) <= 0.5
    out = _cli(*common, "--budget", "100", env={"OPENAI_API_KEY": KEY})
    assert out.returncode == 0 and _count(ws / "rtdemo.sqlite3") == 200


def test_estimate_requests_nothing(tmp_path, server):
    out = _cli(
        "estimate",
        *GEN_ARGS[1:],
        "--base-url",
        server.base_url,
        "--workspace",
        tmp_path / "ws",
        env={"OPENAI_API_KEY": KEY},
    )
    assert out.returncode == 0, out.stderr
    assert "200 samples to generate for 50 questions: 250 requests" in out.stdout
    assert "cost unknown" in out.stdout
    assert server.requests_total == 0


def test_canary_key_appears_nowhere(tmp_path, server):
    canary = "sk-canary-" + "7q" * 12
    server.api_key = canary
    ws, out_file = tmp_path / "ws", tmp_path / "export.jsonl"
    env = {"OPENAI_API_KEY": canary, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    args = [*GEN_ARGS, "--limit", "5", "--base-url", server.base_url, "--workspace", ws]
    out = _cli(*args, env=env)
    assert out.returncode == 0, out.stderr
    out2 = _cli("export", "--experiment", "kill", "--workspace", ws, "--out", out_file, "--all")
    assert out2.returncode == 0
    assert canary not in out.stdout + out.stderr
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path


def _wait_job(ws: Path, job_id: int, statuses=("done", "failed", "cancelled"), timeout=90):
    from rtdemo.jobs.runner import get_job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Store(ws) as store:
            job = get_job(store, job_id)
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.status}")


@pytest.mark.slow
def test_background_job_generates_reports_progress_and_keeps_the_key_off_disk(tmp_path, server):
    from rtdemo.jobs.files import read_progress

    canary = "sk-canary-bg-" + "x9" * 10
    server.api_key = canary
    ws = tmp_path / "ws"
    args = [*GEN_ARGS, "--limit", "10", "--base-url", server.base_url, "--workspace", ws]
    out = _cli(*args, "--background", env={"OPENAI_API_KEY": canary})
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout.split("started job ")[1].split()[0])
    job = _wait_job(ws, job_id)
    assert job.status == "done", (job.error, (job.run_dir / "log.txt").read_text())
    progress = read_progress(job)
    assert progress[-1]["done"] == progress[-1]["total"] == 40
    assert {"failures", "spend", "rate", "eta", "accuracy"} <= set(progress[-1])
    assert _count(ws / "rtdemo.sqlite3") == 40
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
    assert canary not in out.stdout + out.stderr


@pytest.mark.slow
def test_background_job_cancel_then_resume_completes_without_duplicates(tmp_path, server):
    from rtdemo.jobs.runner import cancel_job, resume_job

    # The fake answers 20 requests and holds the next ones: the cancel lands while both of the
    # job's slots wait on the server, at a known point.
    answered, concurrency = 20, 2
    server.hold(after=answered)
    ws = tmp_path / "ws"
    args = [
        *GEN_ARGS,
        "--limit",
        "30",
        "--concurrency",
        str(concurrency),
        "--base-url",
        server.base_url,
        "--workspace",
        ws,
    ]
    out = _cli(*args, "--background", env={"OPENAI_API_KEY": KEY})
    job_id = int(out.stdout.split("started job ")[1].split()[0])
    assert server.wait_held(concurrency, timeout=90), server.held
    with Store(ws) as store:
        cancel_job(store, job_id)
    server.release()
    job = _wait_job(ws, job_id)
    assert job.status == "cancelled"
    # Nothing is requested after the cancel beyond the held requests, which land.
    assert server.requests_total == answered + concurrency, server.requests_total
    assert server.by_outcome["ok"] == answered + concurrency
    stopped_at = _count(ws / "rtdemo.sqlite3")
    assert 0 < stopped_at < 120
    with Store(ws) as store:
        with pytest.raises(Exception, match="OPENAI_API_KEY"):
            resume_job(store, job_id, env={})
        resume_job(store, job_id, env={"OPENAI_API_KEY": KEY})
    job = _wait_job(ws, job_id)
    assert job.status == "done", job.error
    with Store(ws) as store:
        samples = load_samples(store, store.get_experiment("kill").id)
    assert len(samples) == 120 and len({(s.idx, s.sample_index) for s in samples}) == 120
