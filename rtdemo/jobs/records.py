"""The records of background jobs: the `Job` dataclass and the rows of the store's `jobs` table.

The one module every other part of the job runner builds on (it imports none of them):

    job = fetch_job(store, 3)                               # a `Job`, or `UserError`
    update_job(store, 3, "status = 'queued'", status="running")   # whether the row changed
    job.uses_torch, job.ended, job.to_dict()

`fair_key` is who a job counts for when queued torch jobs take turns (its owner, or in the app an
anonymous visitor's hashed client address: `rtdemo.hosting.fairness`); `turn` numbers the torch
jobs in the order they got the machine's torch slot (None: never had it). Both are internal:
the app never shows them.

Starting, watching, cancelling and resuming jobs is `rtdemo.jobs.runner`; their run folders are
`rtdemo.jobs.files`; their processes are `rtdemo.jobs.processes`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rtdemo.errors import UserError
from rtdemo.workspace.store import Store

Status = Literal["queued", "running", "done", "failed", "cancelled"]
ENDED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
TORCH_KINDS: frozenset[str] = frozenset({"train", "evaluate"})
LOCAL_MODEL_TEACHERS: frozenset[str] = frozenset({"hf"})  # `generate --teacher` runs torch here

JOB_COLUMNS = (
    "id, owner, experiment_id, kind, status, argv, env_names, pid, heartbeat_at, run_dir, error,"
    " cancel_requested, created_at, started_at, ended_at, fair_key, turn"
)


@dataclass(frozen=True)
class Job:
    """One background job as recorded in the store; `run_dir` is resolved in the workspace."""

    id: int
    owner: str
    experiment_id: int | None
    kind: str
    status: Status
    argv: list[str]
    env_names: list[str]
    pid: int | None
    heartbeat_at: float | None  # Unix time
    run_dir: Path
    error: str | None
    cancel_requested: bool
    created_at: str  # UTC, ISO 8601
    started_at: str | None
    ended_at: str | None
    fair_key: str = ""  # who the job counts for in the torch queue (the owner if "")
    turn: int | None = None  # its place in the order torch jobs got the slot; None: never

    @property
    def uses_torch(self) -> bool:
        """Whether the job runs a model here (it then waits for the machine's torch slot)."""
        return uses_torch(self.kind, self.argv)

    @property
    def ended(self) -> bool:
        """Whether the job is done, failed or cancelled."""
        return self.status in ENDED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the record."""
        return {**asdict(self), "run_dir": str(self.run_dir)}


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of `flag` in a job's argv (`--flag value` or `--flag=value`), else None."""
    for i, token in enumerate(argv):
        if token == flag and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(f"{flag}="):
            return token.split("=", 1)[1]
    return None


def uses_torch(kind: str, argv: Sequence[str]) -> bool:
    """Whether a job of `kind` with `argv` is a torch workload: training, evaluation, or a
    generation whose teacher is a local model."""
    if kind in TORCH_KINDS:
        return True
    return kind == "generate" and flag_value(argv, "--teacher") in LOCAL_MODEL_TEACHERS


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second: the format of the table's timestamps."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def job_from_row(row: Sequence[Any], workspace: Path) -> Job:
    """The `Job` of a row selected as `JOB_COLUMNS`; its run folder resolved in `workspace`."""
    values = list(row)
    values[5], values[6] = json.loads(values[5]), json.loads(values[6])
    values[9] = workspace / values[9]
    values[11] = bool(values[11])
    return Job(*values)


def fetch_job(store: Store, job_id: int) -> Job:
    """Job `job_id` as recorded (of any owner, not refreshed); `UserError` if there is none."""
    rows = store.read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
    if not rows:
        raise UserError(f"no job {job_id}")
    return job_from_row(rows[0], store.workspace)


def update_job(store: Store, job_id: int, where: str = "", **values: Any) -> bool:
    """Set columns of job `job_id` (only if `where` holds too); whether a row changed."""
    sets = ", ".join(f"{column} = ?" for column in values)
    sql = f"UPDATE jobs SET {sets} WHERE id = ?" + (f" AND ({where})" if where else "")
    with store.transaction() as conn:
        return conn.execute(sql, (*values.values(), job_id)).rowcount > 0
