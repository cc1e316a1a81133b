"""The workspace store: experiments and their questions in one SQLite file per workspace.

    from rtdemo.workspace.store import Store, workspace_path
    with Store(workspace_path(None)) as store:
        exp = store.create_experiment("coin-flip-demo", task="coin_flip")
        store.add_questions(exp.id, examples)

The file is `<workspace>/rtdemo.sqlite3`. Several processes (the app, background jobs, the CLI) open
it at once, so it runs in WAL mode, every write is a `BEGIN IMMEDIATE` transaction and connections
wait up to 30 s for a lock instead of failing with "database is locked". Where WAL is refused
(network or FUSE mounts, such as a mounted Storage Bucket on Spaces) the store falls back to the
rollback journal with a warning.

The schema version lives in `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i + 1 and is
applied on open. Later changes append to `MIGRATIONS`; never edit a released entry.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from rtdemo.errors import UserError
from rtdemo.tasks.types import SPLITS, Example

DB_NAME = "rtdemo.sqlite3"
DEFAULT_WORKSPACE = "rtdemo-data"
BUSY_TIMEOUT_S = 30.0
LOCK_RETRIES = 5  # retries when SQLite reports busy without waiting (see _retry_locked)
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")

MIGRATIONS: list[str] = [
    # v0 -> v1: experiments and the task questions they were built from.
    """
    CREATE TABLE experiments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        owner TEXT NOT NULL DEFAULT 'local',
        task TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        UNIQUE (owner, name)
    );
    CREATE TABLE questions (
        id INTEGER PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
        split TEXT NOT NULL CHECK (split IN ('train', 'test')),
        idx INTEGER NOT NULL,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        UNIQUE (experiment_id, split, idx)
    );
    """,
    # v1 -> v2: teacher samples (one row per rationale, identified by question and teacher
    # settings), review decisions on top of them, and background jobs.
    """
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
        split TEXT NOT NULL,
        idx INTEGER NOT NULL,
        question_hash TEXT NOT NULL,
        teacher TEXT NOT NULL,
        base_url TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL,
        temperature REAL NOT NULL,
        max_tokens INTEGER NOT NULL,
        sample_index INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('rationale', 'done', 'failed')),
        rationale_prompt TEXT,
        rationale TEXT,
        rationale_finish TEXT,
        answer_prompt TEXT,
        answer_text TEXT,
        answer_finish TEXT,
        prediction TEXT,
        correct INTEGER,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        settings TEXT NOT NULL DEFAULT '{}',
        updated_at TEXT NOT NULL,
        UNIQUE (experiment_id, question_hash, teacher, base_url, model, temperature, max_tokens,
                sample_index)
    );
    CREATE INDEX samples_by_question ON samples (experiment_id, split, idx);
    CREATE TABLE reviews (
        sample_id INTEGER PRIMARY KEY REFERENCES samples(id) ON DELETE CASCADE,
        decision TEXT CHECK (decision IN ('accepted', 'rejected')),
        edited_rationale TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL DEFAULT 'local',
        experiment_id INTEGER REFERENCES experiments(id) ON DELETE SET NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        argv TEXT NOT NULL DEFAULT '[]',
        env_names TEXT NOT NULL DEFAULT '[]',
        pid INTEGER,
        heartbeat_at REAL,
        run_dir TEXT NOT NULL DEFAULT '',
        error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT
    );
    CREATE INDEX jobs_by_owner ON jobs (owner, status);
    """,
    # v2 -> v3: student runs (one fine-tuning of one student in one format) and evaluations of
    # students and of the teacher on a split.
    """
    CREATE TABLE student_runs (
        id INTEGER PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('cot', 'vanilla')),
        diverse_samples INTEGER NOT NULL DEFAULT 1,
        student TEXT NOT NULL,
        method TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'trained')),
        train_examples INTEGER NOT NULL DEFAULT 0,
        output_dir TEXT NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}',
        result TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        UNIQUE (experiment_id, name)
    );
    CREATE TABLE evaluations (
        id INTEGER PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
        run_id INTEGER REFERENCES student_runs(id) ON DELETE CASCADE,
        subject TEXT NOT NULL,
        split TEXT NOT NULL,
        epoch REAL,
        metrics TEXT NOT NULL,
        predictions_path TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX evaluations_by_experiment ON evaluations (experiment_id, subject);
    """,
    # v3 -> v4: the Chat tab's votes, each saved with its exchange (question, gold answer, both
    # sides' outputs and verdicts, settings; never a key) as JSON.
    """
    CREATE TABLE chat_votes (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
        vote TEXT NOT NULL CHECK (vote IN ('left', 'right', 'tie', 'both_bad')),
        question TEXT NOT NULL,
        gold TEXT,
        teacher TEXT NOT NULL,
        student TEXT NOT NULL,
        teacher_correct INTEGER,
        student_correct INTEGER,
        exchange TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX chat_votes_by_owner ON chat_votes (owner, experiment_id);
    """,
    # v4 -> v5: fair use of the torch slot (rtdemo.jobs.runner). `fair_key` is who a job counts
    # for when queued torch jobs take turns (the owner; an anonymous visitor's hashed client
    # address in the app); `turn` numbers the torch jobs in the order they got the slot. Jobs of
    # older workspaces count for their owner, and those that started took their turns in order.
    """
    ALTER TABLE jobs ADD COLUMN fair_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN turn INTEGER;
    UPDATE jobs SET fair_key = owner;
    UPDATE jobs SET turn = id WHERE started_at IS NOT NULL;
    CREATE INDEX jobs_by_fair_key ON jobs (fair_key, turn);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

T = TypeVar("T")


@dataclass(frozen=True)
class Experiment:
    """One experiment of one owner: a task and the settings it runs with."""

    id: int
    name: str
    owner: str
    task: str
    config: dict[str, Any]
    created_at: str  # UTC, ISO 8601


def workspace_path(workspace: str | Path | None = None) -> Path:
    """The workspace folder: `workspace`, else `$RTDEMO_HOME`, else `./rtdemo-data`; created."""
    chosen = workspace or os.environ.get("RTDEMO_HOME") or DEFAULT_WORKSPACE
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _retry_locked(action: Callable[[], T]) -> T:
    """Run `action`, retrying a few times if SQLite says the database is locked or busy.

    The busy timeout already makes SQLite wait, but a few paths (WAL recovery, a journal-mode
    change racing another opener) return SQLITE_BUSY at once; a short randomized backoff lets
    simultaneous openers spread out instead of failing.
    """
    for attempt in range(LOCK_RETRIES):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                raise
            time.sleep(0.05 * 2**attempt * (1 + random.random()))
    return action()  # the last attempt: its error is the one the caller sees


def _open_sqlite(path: str) -> sqlite3.Connection:
    """The raw connection; a seam so tests can open through a VFS that refuses WAL."""
    # isolation_level=None: we issue BEGIN ourselves; Python's implicit DEFERRED transactions
    # would upgrade to a write lock mid-transaction, which is where "database is locked" comes from.
    return sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


def connect(path: str | Path) -> tuple[sqlite3.Connection, str]:
    """Open the database at `path` with the store's settings; return it and its journal mode.

    Tries WAL; if SQLite refuses it, warns and keeps the rollback journal it reports instead.
    """
    conn = _open_sqlite(str(path))
    try:
        mode = str(_retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]))
        if mode != "wal":
            message = f"SQLite refused WAL mode for {path} (often on network or FUSE mounts)"
            warnings.warn(f"{message}: falling back to the {mode!r} rollback journal", stacklevel=2)
        # NORMAL is corruption-safe only with WAL; the rollback journal needs FULL for that.
        conn.execute(f"PRAGMA synchronous={'NORMAL' if mode == 'wal' else 'FULL'}")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn, mode


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into statements (semicolons inside strings or triggers are kept)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip(" \n\t;"):
        yield buffer  # incomplete: let SQLite report the syntax error


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Bring the database of `conn` to schema `target` (default: the newest); return its version.

    Each migration runs in its own `BEGIN IMMEDIATE` transaction and re-reads the version under
    the lock, so several processes opening a fresh workspace at once apply each step exactly once.
    Raises `UserError` if the database is newer than this code knows.
    """
    target = SCHEMA_VERSION if target is None else target
    if not 0 <= target <= SCHEMA_VERSION:
        raise ValueError(f"schema target must be between 0 and {SCHEMA_VERSION}, not {target}")
    if conn.in_transaction:
        raise ValueError("migrate() runs its own transactions: commit the connection first")
    version = _user_version(conn)  # first without the write lock: opening stays cheap
    while version < target:
        _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            version = _user_version(conn)  # again under the lock: another process may have won
            if version < target:
                # executescript() would COMMIT first, so run the statements one by one instead.
                for statement in _statements(MIGRATIONS[version]):
                    conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version={version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                conn.execute("ROLLBACK")
            raise
    if version > SCHEMA_VERSION:
        raise UserError(
            f"this workspace was written by a newer rtdemo (schema v{version}, this one knows "
            f"v{SCHEMA_VERSION}): upgrade rtdemo"
        )
    if version > target:
        raise ValueError(f"the database is at schema v{version}, past the target {target}")
    return version


def check_name(name: str, what: str = "experiment name", example: str = "gsm8k-run-1") -> None:
    """Refuse a name that cannot be one folder of the workspace (experiments, student runs).

    1-64 letters, digits, '-', '_' or '.', not only dots: no '/', so never a path that leaves its
    parent folder ('../x', '..'). `what` and `example` make the message fit the caller.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or set(name) == {"."}:
        raise UserError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '-', '_' or '.' "
            f"(not only dots), e.g. {example!r}"
        )


def _experiment(row: tuple[Any, ...]) -> Experiment:
    id_, name, owner, task, config, created_at = row
    return Experiment(id_, name, owner, task, json.loads(config), created_at)


_EXPERIMENT_COLUMNS = "id, name, owner, task, config, created_at"


class Store:
    """The SQLite store of one workspace. Cheap to open; safe to share between threads."""

    def __init__(self, workspace: Path) -> None:
        """Open (creating if needed) `<workspace>/rtdemo.sqlite3` and apply pending migrations."""
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path = self.workspace / DB_NAME
        self._conn, self.journal_mode = connect(self.path)
        # One connection per Store; the lock serializes threads and lets transactions nest.
        self._lock = threading.RLock()
        self._depth = 0
        try:
            migrate(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        """Close the connection; further calls fail. Closing twice is harmless."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: `BEGIN IMMEDIATE`, committed on success, rolled back on error.

        Taking the write lock up front (rather than on the first write) is what keeps concurrent
        writers waiting for each other instead of failing. Nested calls become savepoints.
        """
        with self._lock:
            if self._depth:
                savepoint = f"sp{self._depth}"
                self._conn.execute(f"SAVEPOINT {savepoint}")
                self._depth += 1
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute(f"ROLLBACK TO {savepoint}")
                    raise
                finally:
                    self._depth -= 1
                    self._conn.execute(f"RELEASE {savepoint}")
                return
            _retry_locked(lambda: self._conn.execute("BEGIN IMMEDIATE"))
            self._depth = 1
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may already have rolled back
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only query (other modules own their tables' SQL)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # Experiments ----------------------------------------------------------------------------

    def create_experiment(
        self, name: str, task: str, owner: str = "local", config: dict[str, Any] | None = None
    ) -> Experiment:
        """Create an experiment; raise `UserError` if the name is invalid or already used."""
        check_name(name)
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        config_json = json.dumps(config or {}, sort_keys=True)
        with self.transaction() as conn:
            taken = "SELECT 1 FROM experiments WHERE owner = ? AND name = ?"
            if conn.execute(taken, (owner, name)).fetchone():
                raise UserError(f"an experiment named {name!r} already exists: pick another name")
            cursor = conn.execute(
                "INSERT INTO experiments (name, owner, task, config, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, owner, task, config_json, created_at),
            )
            experiment_id = int(cursor.lastrowid or 0)
        return Experiment(experiment_id, name, owner, task, json.loads(config_json), created_at)

    def get_experiment(self, name: str, owner: str = "local") -> Experiment:
        """The experiment `name` of `owner`; `UserError` listing the owner's experiments if none."""
        rows = self.read(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE owner = ? AND name = ?",
            (owner, name),
        )
        if rows:
            return _experiment(rows[0])
        existing = [e.name for e in self.list_experiments(owner)]
        known = ", ".join(existing) if existing else "none yet"
        raise UserError(f"no experiment named {name!r} (existing experiments: {known})")

    def list_experiments(self, owner: str = "local") -> list[Experiment]:
        """The experiments of `owner`, by name."""
        rows = self.read(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE owner = ? ORDER BY name",
            (owner,),
        )
        return [_experiment(row) for row in rows]

    # Questions ------------------------------------------------------------------------------

    def add_questions(self, experiment_id: int, examples: Iterable[Example]) -> int:
        """Store task questions for an experiment; return how many were new.

        Any objects with `.question`, `.answer`, `.split` and `.index` will do. Idempotent: a
        question already stored under the same (split, index) is left as it is.
        """
        rows = [(experiment_id, e.split, e.index, e.question, e.answer) for e in examples]
        if bad := [row for row in rows if row[1] not in SPLITS]:
            raise ValueError(f"question {bad[0][2]} has split {bad[0][1]!r}, not one of {SPLITS}")
        with self.transaction() as conn:
            if not conn.execute(
                "SELECT 1 FROM experiments WHERE id = ?", (experiment_id,)
            ).fetchone():
                raise UserError(f"experiment {experiment_id} does not exist (was it deleted?)")
            before = conn.total_changes
            # ON CONFLICT(...) DO NOTHING rather than INSERT OR IGNORE: OR IGNORE would also drop
            # rows that break CHECK or NOT NULL silently; we only mean to skip duplicates.
            conn.executemany(
                "INSERT INTO questions (experiment_id, split, idx, question, answer)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (experiment_id, split, idx) DO NOTHING",
                rows,
            )
            return conn.total_changes - before

    def questions(self, experiment_id: int, split: str | None = None) -> list[Example]:
        """The questions of an experiment, train before test, each split by index."""
        where, params = self._question_filter(experiment_id, split)
        rows = self.read(
            f"SELECT question, answer, split, idx FROM questions WHERE {where}"
            " ORDER BY split = 'test', idx",
            params,
        )
        return [Example(question=q, answer=a, split=s, index=i) for q, a, s, i in rows]

    def count_questions(self, experiment_id: int, split: str | None = None) -> int:
        """How many questions an experiment has, in one split or in all."""
        where, params = self._question_filter(experiment_id, split)
        return int(self.read(f"SELECT COUNT(*) FROM questions WHERE {where}", params)[0][0])

    @staticmethod
    def _question_filter(experiment_id: int, split: str | None) -> tuple[str, tuple[Any, ...]]:
        if split is None:
            return "experiment_id = ?", (experiment_id,)
        if split not in SPLITS:
            raise ValueError(f"split {split!r} not in {SPLITS}")
        return "experiment_id = ? AND split = ?", (experiment_id, split)
