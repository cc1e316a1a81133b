"""Fair use of the one torch slot through the app: a job started from a tab counts for the client
its request came from (`gr.Request`, behind a trusted proxy its X-Forwarded-For), so fresh owner
ids from one client share one place in the round-robin and one job cap; another visitor's
training is next in line (and its tab says so).

No job runs here: a fake running training (of the first client) holds the slot, so the trainings
the clients start stay queued.

.venv/bin/python -m pytest tests/ui/test_fair_use.py
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rtdemo.hosting.fairness import client_key
from rtdemo.jobs.runner import torch_queue
from rtdemo.workspace.store import Store

LETTERS = ("last_letter_concatenation", "synthetic", 0, 40, 2, None, "question", "answer", "", 0)
VANILLA = ("tiny", "tiny", "full", "vanilla baseline", "", 4, 20, 4, 0.003, 1, True)


def a_visitor(url: str, forwarded: str):
    """A `gradio_client` session whose requests come through the proxy as `forwarded` says."""
    from gradio_client import Client

    client = Client(url, verbose=False, headers={"X-Forwarded-For": forwarded})
    kept = client.predict(None, None, api_name="/session")[0]
    client.owner = kept.partition(".")[0]  # the signed id a browser keeps: "<owner>.<signature>"
    client.predict("letters", *LETTERS, api_name="/create_experiment")
    return client


def running_training(workspace: Path, owner: str, key: str) -> int:
    """A training job recorded as running (its heartbeat ahead of time: it never goes stale)."""
    with Store(workspace) as store, store.transaction() as conn:
        return conn.execute(
            "INSERT INTO jobs (owner, kind, status, argv, run_dir, heartbeat_at, created_at, "
            "started_at, fair_key, turn) VALUES (?, 'train', 'running', '[]', 'runs/x', ?, "
            "'now', 'now', ?, 1)",
            (owner, time.time() + 3600, key),
        ).lastrowid


@pytest.mark.slow
def test_fresh_ids_from_one_client_share_its_turn_and_its_cap(launched_app, tmp_path, monkeypatch):
    monkeypatch.setenv("RTDEMO_TRUSTED_PROXIES", "1")  # the app sits behind one proxy
    monkeypatch.setenv("RTDEMO_MAX_CLIENT_JOBS", "4")
    _, url = launched_app
    workspace = tmp_path / "workspace"
    # One client (203.0.113.5) with three fresh owner ids, each forging another address in front
    # of what the proxy appended; its first training runs. Then another visitor.
    same = [a_visitor(url, f"10.9.9.{i}, 203.0.113.5") for i in range(3)]
    theirs = client_key("203.0.113.5")
    running_training(workspace, same[0].owner, theirs)
    for client in same:
        message, _ = client.predict("letters", *VANILLA, api_name="/start_training")
        assert "queued" in message, message
    other = a_visitor(url, "198.51.100.7")
    message, _ = other.predict("letters", *VANILLA, api_name="/start_training")
    assert "queued" in message, message

    with Store(workspace) as store:
        line = torch_queue(store)
    # The other visitor's fair turn: next, before the client's three.
    assert [j.owner for j in line] == [other.owner, *(c.owner for c in same)]
    assert {j.fair_key for j in line if j.owner != other.owner} == {theirs}
    assert line[0].fair_key == client_key("198.51.100.7")
    status = other.predict("letters", api_name="/training_status")[0]
    assert "position 1 of 4" in status and "it is next" in status, status
    status = same[2].predict("letters", api_name="/training_status")[0]
    assert "position 4 of 4" in status and "3 queued job(s) go before it" in status, status
    assert theirs not in status and "203.0.113.5" not in status  # the key is internal

    # A fourth fresh id of the same client: its cap (4 together) is reached.
    fourth = a_visitor(url, "10.9.9.9, 203.0.113.5")
    message, _ = fourth.predict("letters", *VANILLA, api_name="/start_training")
    assert message.startswith("⚠️ visitors from your address already have 4 job(s)"), message
    with Store(workspace) as store:
        owners_of_jobs = {row[0] for row in store.read("SELECT owner FROM jobs")}
    assert fourth.owner not in owners_of_jobs
