"""Tests of the workspace store: the API, WAL and its fallback, migrations, real concurrency."""

from __future__ import annotations

import multiprocessing
import sqlite3
import traceback
from datetime import datetime
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.tasks.types import Example
from rtdemo.workspace import store as store_module
from rtdemo.workspace.store import (
    DB_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    Store,
    connect,
    migrate,
    workspace_path,
)

WORKERS = 6
QUESTIONS_PER_WORKER = 40


def _examples(n: int, split: str = "train", start: int = 0) -> list[Example]:
    return [Example(f"question {i}?", f"{i}", split, i) for i in range(start, start + n)]


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.close()
    return {name for (name,) in rows}


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def _build_at(path: Path, version: int) -> None:
    """A database file left at an older schema version, as an older rtdemo would have left it."""
    conn = sqlite3.connect(path)
    try:
        migrate(conn, target=version)
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "ws") as opened:
        yield opened


# Workspace folder ---------------------------------------------------------------------------


def test_workspace_path_prefers_argument_then_env_then_default(tmp_path, monkeypatch):
    assert workspace_path(tmp_path / "given") == (tmp_path / "given").resolve()
    assert (tmp_path / "given").is_dir()
    monkeypatch.setenv("RTDEMO_HOME", str(tmp_path / "from-env"))
    assert workspace_path(None) == (tmp_path / "from-env").resolve()
    monkeypatch.delenv("RTDEMO_HOME")
    monkeypatch.chdir(tmp_path)
    assert workspace_path(None) == (tmp_path / "rtdemo-data").resolve()
    assert (tmp_path / "rtdemo-data").is_dir()


# API ----------------------------------------------------------------------------------------


def test_round_trip(store: Store):
    exp = store.create_experiment("gsm8k-run.1", task="gsm8k", config={"teacher": "offline"})
    assert (exp.name, exp.owner, exp.task, exp.config) == (
        "gsm8k-run.1",
        "local",
        "gsm8k",
        {"teacher": "offline"},
    )
    assert datetime.fromisoformat(exp.created_at).utcoffset().total_seconds() == 0
    assert store.get_experiment("gsm8k-run.1") == exp
    assert store.list_experiments() == [exp]

    examples = _examples(3, "test") + _examples(5, "train")
    assert store.add_questions(exp.id, reversed(examples)) == 8
    assert store.questions(exp.id) == _examples(5, "train") + _examples(3, "test")
    assert store.questions(exp.id, split="test") == _examples(3, "test")
    assert (store.count_questions(exp.id), store.count_questions(exp.id, "train")) == (8, 5)
    assert store.count_questions(exp.id, "test") == 3


def test_data_survives_reopening(tmp_path):
    with Store(tmp_path) as first:
        exp = first.create_experiment("kept", task="coin_flip")
        first.add_questions(exp.id, _examples(4))
    with Store(tmp_path) as second:
        assert second.get_experiment("kept") == exp
        assert second.count_questions(exp.id) == 4


def test_duplicate_name_is_a_user_error(store: Store):
    store.create_experiment("same", task="gsm8k")
    with pytest.raises(UserError, match="'same' already exists"):
        store.create_experiment("same", task="aqua")
    assert len(store.list_experiments()) == 1


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "a/b", "..", "ünï", "semi;colon"])
def test_bad_names_are_user_errors(store: Store, name: str):
    with pytest.raises(UserError, match="invalid experiment name"):
        store.create_experiment(name, task="gsm8k")


@pytest.mark.parametrize("name", ["a", "x" * 64, "Run_2-b.v3"])
def test_good_names(store: Store, name: str):
    assert store.create_experiment(name, task="gsm8k").name == name


def test_owners_are_isolated(store: Store):
    mine = store.create_experiment("shared-name", task="gsm8k", owner="alice")
    with pytest.raises(UserError, match=r"no experiment named 'shared-name'.*none yet"):
        store.get_experiment("shared-name", owner="bob")
    assert store.list_experiments(owner="bob") == []
    theirs = store.create_experiment("shared-name", task="aqua", owner="bob")
    assert store.get_experiment("shared-name", owner="alice") == mine
    assert store.list_experiments(owner="bob") == [theirs]
    assert store.list_experiments() == []  # the default owner 'local' sees neither


def test_missing_experiment_lists_what_exists(store: Store):
    store.create_experiment("beta", task="gsm8k")
    store.create_experiment("alpha", task="gsm8k")
    with pytest.raises(UserError, match=r"no experiment named 'gamma'.*alpha, beta"):
        store.get_experiment("gamma")


def test_add_questions_is_idempotent(store: Store):
    exp = store.create_experiment("idem", task="gsm8k")
    assert store.add_questions(exp.id, _examples(10)) == 10
    assert store.add_questions(exp.id, _examples(10)) == 0
    assert store.add_questions(exp.id, _examples(10, start=5)) == 5  # 5..9 already stored
    changed = [Example("another question", "99", "train", 0)]
    assert store.add_questions(exp.id, changed) == 0  # the stored question is kept
    assert store.questions(exp.id)[0] == _examples(1)[0]
    assert store.count_questions(exp.id) == 15


def test_add_questions_rejects_bad_input(store: Store):
    exp = store.create_experiment("strict", task="gsm8k")
    with pytest.raises(ValueError, match="'dev'"):
        store.add_questions(exp.id, [Example("q", "a", "dev", 0)])
    with pytest.raises(UserError, match="does not exist"):
        store.add_questions(exp.id + 1, _examples(1))
    with pytest.raises(ValueError, match="'dev'"):
        store.questions(exp.id, split="dev")
    assert store.count_questions(exp.id) == 0


def test_transactions_roll_back_and_nest(store: Store):
    exp = store.create_experiment("tx", task="gsm8k")
    with pytest.raises(RuntimeError), store.transaction():
        store.add_questions(exp.id, _examples(3))
        raise RuntimeError("abort")
    assert store.count_questions(exp.id) == 0
    with store.transaction():
        store.add_questions(exp.id, _examples(2))
        with pytest.raises(UserError):
            store.create_experiment("tx", task="gsm8k")  # inner failure: outer work survives
    assert store.count_questions(exp.id) == 2


def test_deleting_an_experiment_cascades(store: Store):
    exp = store.create_experiment("gone", task="gsm8k")
    store.add_questions(exp.id, _examples(3))
    with store.transaction() as conn:
        conn.execute("DELETE FROM experiments WHERE id = ?", (exp.id,))
    assert store.count_questions(exp.id) == 0


# Journal mode -------------------------------------------------------------------------------


def test_a_real_file_uses_wal(store: Store):
    assert store.journal_mode == "wal"
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_refused_wal_falls_back_with_a_warning(tmp_path, monkeypatch):
    # The unix-dotfile VFS has no shared memory, so SQLite itself refuses WAL, as on some mounts.
    def open_without_shm(path: str) -> sqlite3.Connection:
        uri = f"{Path(path).as_uri()}?vfs=unix-dotfile"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    monkeypatch.setattr(store_module, "_open_sqlite", open_without_shm)
    with pytest.warns(UserWarning, match="refused WAL"), Store(tmp_path) as fallback:
        assert fallback.journal_mode == "delete"
        assert fallback._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        exp = fallback.create_experiment("on-a-mount", task="gsm8k")
        assert fallback.add_questions(exp.id, _examples(3)) == 3
        assert fallback.questions(exp.id) == _examples(3)


def test_in_memory_database_warns():
    with pytest.warns(UserWarning, match="refused WAL"):
        conn, mode = connect(":memory:")
    conn.close()
    assert mode == "memory"


# Migrations ---------------------------------------------------------------------------------


def test_an_empty_database_is_upgraded_on_open(tmp_path):
    _build_at(tmp_path / DB_NAME, 0)
    assert _user_version(tmp_path / DB_NAME) == 0
    with Store(tmp_path) as upgraded:
        assert upgraded.list_experiments() == []
    assert _user_version(tmp_path / DB_NAME) == SCHEMA_VERSION


@pytest.mark.parametrize("version", range(len(MIGRATIONS)))
def test_every_older_version_is_upgraded(tmp_path, version: int):
    _build_at(tmp_path / DB_NAME, version)
    assert _user_version(tmp_path / DB_NAME) == version
    with Store(tmp_path) as upgraded:
        exp = upgraded.create_experiment("after-upgrade", task="gsm8k")
        assert upgraded.add_questions(exp.id, _examples(2)) == 2
    assert _user_version(tmp_path / DB_NAME) == SCHEMA_VERSION
    assert {"experiments", "questions"} <= _tables(tmp_path / DB_NAME)


def test_migrate_is_idempotent_and_refuses_bad_targets(tmp_path):
    conn = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert migrate(conn) == SCHEMA_VERSION
        assert migrate(conn) == SCHEMA_VERSION
        with pytest.raises(ValueError):
            migrate(conn, target=SCHEMA_VERSION + 1)
        with pytest.raises(ValueError, match="past the target"):
            migrate(conn, target=SCHEMA_VERSION - 1)  # no downgrades
    finally:
        conn.close()


def test_a_newer_database_is_refused(tmp_path):
    _build_at(tmp_path / DB_NAME, SCHEMA_VERSION)
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    expected = rf"newer rtdemo \(schema v{SCHEMA_VERSION + 1}, this one knows v{SCHEMA_VERSION}\)"
    with pytest.raises(UserError, match=expected):
        Store(tmp_path)


# Concurrency with real processes ------------------------------------------------------------


def _worker(workspace: str, number: int, barrier, results) -> None:
    """One process: open its own Store once all are ready, then write one transaction at a time."""
    try:
        barrier.wait(timeout=60)
        with Store(Path(workspace)) as own:
            exp = own.create_experiment(f"worker-{number}", task="gsm8k", owner=f"user{number}")
            first = number * QUESTIONS_PER_WORKER
            for index in range(first, first + QUESTIONS_PER_WORKER):
                assert own.add_questions(exp.id, [Example(f"q{index}", "a", "train", index)]) == 1
                own.count_questions(exp.id)  # readers interleaved with the writers
        results.put((number, None))
    except BaseException:
        results.put((number, traceback.format_exc()))
        raise


def test_concurrent_writers_in_real_processes(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    # A fresh workspace: the processes also race to create the file and run the migrations.
    processes = [
        context.Process(target=_worker, args=(str(tmp_path), number, barrier, results))
        for number in range(WORKERS)
    ]
    for process in processes:
        process.start()
    reports = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    errors = {number: error for number, error in reports.items() if error}
    assert not errors, "\n".join(f"worker {n}:\n{e}" for n, e in errors.items())
    assert [process.exitcode for process in processes] == [0] * WORKERS

    conn = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert conn.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == WORKERS
        assert conn.execute("SELECT COUNT(*) FROM questions").fetchone()[0] == 240
        per_experiment = conn.execute(
            "SELECT COUNT(*) FROM questions GROUP BY experiment_id"
        ).fetchall()
        assert per_experiment == [(QUESTIONS_PER_WORKER,)] * WORKERS
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_v1_workspace_upgrades_to_v2_keeping_its_data(tmp_path):
    """A workspace written by the first release (experiments, questions) gains samples,
    reviews and jobs, and keeps what it had."""
    path = tmp_path / "ws" / DB_NAME
    path.parent.mkdir()
    _build_at(path, 1)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO experiments (name, owner, task, config, created_at) "
        "VALUES ('old', 'local', 'coin_flip', '{}', '2026-01-01T00:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO questions (experiment_id, split, idx, question, answer) "
        "VALUES (1, 'train', 3, 'q?', 'yes')"
    )
    conn.commit()
    conn.close()
    with Store(tmp_path / "ws") as store:
        exp = store.get_experiment("old")
        assert store.questions(exp.id) == [Example("q?", "yes", "train", 3)]
        assert {"samples", "reviews", "jobs"} <= _tables(path)
    assert _user_version(path) == SCHEMA_VERSION >= 2


def test_v3_workspace_upgrades_to_v4_with_chat_votes(tmp_path):
    """A workspace of the release before the Chat tab (student runs, evaluations) gains the
    chat_votes table and keeps what it had; votes go with their experiment."""
    path = tmp_path / "ws" / DB_NAME
    path.parent.mkdir()
    _build_at(path, 3)
    assert "chat_votes" not in _tables(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO experiments (name, owner, task, config, created_at) "
        "VALUES ('old', 'alice', 'coin_flip', '{}', '2026-01-01T00:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO student_runs (experiment_id, name, format, student, method, output_dir, "
        "created_at) VALUES (1, 'cot', 'cot', 'tiny', 'full', 'runs/x', '2026-01-01')"
    )
    conn.commit()
    conn.close()
    with Store(tmp_path / "ws") as store:
        assert _user_version(path) == SCHEMA_VERSION >= 4
        exp = store.get_experiment("old", owner="alice")
        assert store.read("SELECT name FROM student_runs") == [("cot",)]
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO chat_votes (owner, experiment_id, vote, question, teacher, student, "
                "exchange, created_at) VALUES ('alice', ?, 'tie', 'q', 't', 's', '{}', 'now')",
                (exp.id,),
            )
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(
                    "INSERT INTO chat_votes (owner, experiment_id, vote, question, teacher, "
                    "student, exchange, created_at) VALUES ('alice', ?, 'maybe', 'q', 't', 's', "
                    "'{}', 'now')",
                    (exp.id,),
                )
            conn.execute("DELETE FROM experiments WHERE id = ?", (exp.id,))
        assert store.read("SELECT COUNT(*) FROM chat_votes") == [(0,)]


def test_v4_workspace_upgrades_to_v5_with_fairness_keys_and_turns(tmp_path):
    """A workspace of the release before fair turns: its jobs count for their owners, those that
    started took their turns in order, and the torch queue reads them."""
    from rtdemo.jobs.runner import torch_queue

    path = tmp_path / "ws" / DB_NAME
    path.parent.mkdir()
    _build_at(path, 4)
    conn = sqlite3.connect(path)
    rows = [  # (owner, status, started_at)
        ("alice", "done", "2026-01-01"),
        ("bob", "running", "2026-01-02"),
        ("alice", "queued", None),
        ("carol", "queued", None),
    ]
    for owner, status, started in rows:
        conn.execute(
            "INSERT INTO jobs (owner, kind, status, argv, run_dir, created_at, started_at) "
            "VALUES (?, 'train', ?, '[]', 'runs/x', 'now', ?)",
            (owner, status, started),
        )
    conn.commit()
    conn.close()
    with Store(tmp_path / "ws") as store:
        assert _user_version(path) == SCHEMA_VERSION >= 5
        keys = store.read("SELECT id, fair_key, turn FROM jobs ORDER BY id")
        assert keys == [(1, "alice", 1), (2, "bob", 2), (3, "alice", None), (4, "carol", None)]
        # carol never had a turn; alice had hers before bob's: carol, then alice.
        assert [(j.id, j.fair_key) for j in torch_queue(store)] == [(4, "carol"), (3, "alice")]
