"""Background jobs: one mechanism for everything slow (generation, training, evaluation, pushing).

A job is a detached subprocess `python -m rtdemo <argv...> --job-id N`, recorded in the `jobs`
table of the workspace store with its owner, kind and status, and given a run folder
`<workspace>/runs/N-<kind>/` holding `log.txt` (the child's stdout and stderr), `progress.jsonl`
(one JSON object per progress report, with its `time`) and, once a cancel was asked for, `cancel`.

The side that starts and watches jobs (the app, the CLI):

    job = start_job(store, "generate", ["generate", "--task", "coin_flip", ...],
                    env={"OPENAI_API_KEY": key}, env_names=["OPENAI_API_KEY"])
    last_progress(get_job(store, job.id))  # rtdemo.jobs.files: {"time": ..., "done": 12, ...}
    cancel_job(store, job.id)
    resume_job(store, job.id, env={"OPENAI_API_KEY": key})   # keys are asked for again

The command the job runs:

    with job_context(workspace, args.job_id) as ctx:  # rtdemo.jobs.context; no-op if job_id is None
        for i, item in enumerate(items):
            if ctx.cancelled():
                break
            ...
            ctx.progress(done=i + 1, total=len(items))

Secrets reach a job through its environment only: never the database, argv, the run folder or logs.
Torch workloads (`Job.uses_torch`: training, evaluation, and generation with a local model as the
teacher) run one at a time per machine (two of them on two cores thrash); other jobs start at once.

Fair use of that one torch slot: queued torch jobs take turns by *fairness key* (`Job.fair_key`,
given to `start_job`; the owner by default, so the CLI's jobs count for their owner; the app keys
an anonymous visitor by their client address, so fresh owner ids from one client share one key:
`rtdemo.hosting.fairness`). When the slot frees, the key whose last turn is the oldest goes next
(a key that never had one first, the longest-waiting of those first), and a key's own jobs go
oldest first: round-robin across keys, FIFO within a key. So a visitor waits at most one job per
other key that has jobs queued, however many jobs (or ids) each of those keys has.
`torch_queue` is that order, used both by `start_queued` and for the position a queued job shows
(`queue_position`); a key's turns are counted in the store (`Job.turn`), so the order holds for
every process that starts jobs (the app, the CLI, a finishing job).

This module is the parent's side: start, queue, watch, cancel, resume. The rest of the runner:
`rtdemo.jobs.records` (the `Job` record and its rows), `rtdemo.jobs.files` (the run folder's files:
`last_progress`, `tail_log`), `rtdemo.jobs.processes` (spawning, checking and signalling processes)
and `rtdemo.jobs.context` (the child's side).
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rtdemo.errors import UserError
from rtdemo.jobs.files import CANCEL_NAME, LOG_NAME, append_text
from rtdemo.jobs.processes import (
    child_env,
    escalate_cancel,
    exit_reason,
    pid_alive,
    reap,
    signal_group,
    spawn,
)
from rtdemo.jobs.records import (
    JOB_COLUMNS,
    Job,
    fetch_job,
    job_from_row,
    update_job,
    utc_now,
)
from rtdemo.redaction import redact_url, url_secrets
from rtdemo.workspace.store import Store

LOCAL_OWNER = "local"
RUNS_DIR = "runs"

STALE_AFTER_S = 30.0  # no heartbeat for this long and no process: the job stopped
DEAD_AFTER_S = 300.0  # no heartbeat for this long even though the process exists: hung
CANCEL_GRACE_S = 10.0  # how long a cancelled job may take to stop before SIGTERM
STALE_ERROR = "the job stopped without finishing (killed or machine restarted): resume it"

_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_SECRET_FLAG = re.compile(
    r"--?(?:[a-z0-9]+[-_])*(?:api[-_]?key|key|token|secret|password|passwd)(?:=.*)?", re.I
)
_SECRET_VALUE = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,})")


def check_argv(argv: Iterable[str]) -> None:
    """Raise `ValueError` if an argument looks like a secret (a key, or a URL with credentials:
    `rtdemo.redaction`): argv is stored and shown."""
    for arg in argv:
        if _SECRET_FLAG.fullmatch(arg) or _SECRET_VALUE.search(arg):
            raise ValueError(
                f"job arguments are stored and shown, so they must not carry secrets "
                f"({arg.split('=')[0]!r}): pass keys through env= instead"
            )
        if "://" in arg and url_secrets(arg):
            raise ValueError(
                f"job arguments are stored and shown, so they must not carry a URL with "
                f"credentials ({redact_url(arg)!r}): pass the URL through env= instead"
            )


# Starting -----------------------------------------------------------------------------------


def running_torch_job(store: Store) -> Job | None:
    """The torch workload running on this machine (of any owner), or None."""
    rows = store.read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY id")
    return next((j for j in (job_from_row(r, store.workspace) for r in rows) if j.uses_torch), None)


def _claim(store: Store, job_id: int, *, turn: bool = False) -> bool:
    """Mark queued job `job_id` running before spawning it; False if it is no longer queued.
    With `turn` (a torch job taking the slot), give it the next turn number."""
    # The claim's heartbeat is the baseline for stale detection until the child beats itself.
    claimed: dict[str, Any] = dict(status="running", heartbeat_at=time.time())
    with store.transaction() as conn:
        if turn:
            next_turn = conn.execute("SELECT COALESCE(MAX(turn), 0) + 1 FROM jobs").fetchone()
            claimed["turn"] = int(next_turn[0])
        return update_job(store, job_id, "status = 'queued'", **claimed)


# The torch queue ------------------------------------------------------------------------------


def fair_order(queued: Sequence[Job], last_turns: Mapping[str, int]) -> list[Job]:
    """`queued` torch jobs in the order they get the slot: round-robin across fairness keys.

    `last_turns` maps a key to the number of its latest turn (turns count up from 1; a key not in
    it never had one). Repeatedly, the key whose latest turn is the oldest (never: 0; a tie goes
    to the key whose oldest queued job is older) gives its oldest queued job, and that is its
    turn now. Pure: the scheduler and the queue positions shown both use it (`torch_queue`).
    """
    waiting: dict[str, list[Job]] = {}
    for job in sorted(queued, key=lambda j: j.id):
        waiting.setdefault(job.fair_key or job.owner, []).append(job)
    last = dict(last_turns)
    clock = max(last.values(), default=0)
    order: list[Job] = []
    while waiting:
        key = min(waiting, key=lambda k: (last.get(k, 0), waiting[k][0].id))
        order.append(waiting[key].pop(0))
        clock += 1
        last[key] = clock
        if not waiting[key]:
            del waiting[key]
    return order


def torch_queue(store: Store) -> list[Job]:
    """The queued torch jobs of this workspace, in the order they will get the slot as things
    stand (`fair_order`); a job queued later by a key with an older turn can still come first."""
    rows = store.read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY id")
    queued = [job for job in (job_from_row(r, store.workspace) for r in rows) if job.uses_torch]
    if not queued:
        return []
    key = "COALESCE(NULLIF(fair_key, ''), owner)"  # as `fair_order` reads a job's key
    turns = store.read(f"SELECT {key}, MAX(turn) FROM jobs WHERE turn IS NOT NULL GROUP BY 1")
    return fair_order(queued, {key: int(turn) for key, turn in turns})


def queue_position(store: Store, job_id: int) -> tuple[int, int] | None:
    """(N, M): queued torch job `job_id` is Nth of the M queued torch jobs in line for the slot;
    None when it is not queued for it."""
    line = [job.id for job in torch_queue(store)]
    return (line.index(job_id) + 1, len(line)) if job_id in line else None


def job_workspace(job: Job) -> Path:
    """The workspace `job` belongs to (its run folder is `<workspace>/runs/N-<kind>`)."""
    return job.run_dir.parents[len(Path(RUNS_DIR).parts)]


def start_job(
    store: Store,
    kind: str,
    argv: list[str],
    *,
    owner: str = LOCAL_OWNER,
    experiment_id: int | None = None,
    env: dict[str, str] | None = None,
    env_names: Iterable[str] = (),
    fair_key: str | None = None,
) -> Job:
    """Record a job and start `python -m rtdemo <argv...> --job-id N` detached; return it.

    `env` goes to the child's environment only; `env_names` (names, not values) is stored so that
    a resume can ask for them again. A torch workload stays queued while another runs, and
    queued ones take turns by `fair_key` (default: the owner; module docstring). Raises
    `ValueError` for a malformed kind or an argv that carries a secret.
    """
    argv = [str(arg) for arg in argv]
    check_argv(argv)
    if not _KIND.fullmatch(kind):
        raise ValueError(f"job kind {kind!r}: use lowercase letters, digits, '-' or '_'")
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO jobs (owner, experiment_id, kind, status, argv, env_names, created_at,"
            " fair_key) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
            (
                owner,
                experiment_id,
                kind,
                json.dumps(argv),
                json.dumps(sorted(set(env_names))),
                utc_now(),
                fair_key or owner,
            ),
        )
        job_id = int(cursor.lastrowid or 0)
        run_dir = f"{RUNS_DIR}/{job_id}-{kind}"
        conn.execute("UPDATE jobs SET run_dir = ? WHERE id = ?", (run_dir, job_id))
    (store.workspace / run_dir).mkdir(parents=True, exist_ok=True)
    _launch(store, fetch_job(store, job_id), env or {})
    return fetch_job(store, job_id)


def _launch(store: Store, job: Job, env: dict[str, str]) -> None:
    if job.uses_torch:
        start_queued(store, env_by_job={job.id: env})
    elif _claim(store, job.id):
        spawn(store, job, env)


def start_queued(
    store: Store, *, env_by_job: dict[int, dict[str, str]] | None = None
) -> Job | None:
    """Start the next queued torch job (`torch_queue`'s first) if no torch job is running;
    return it, or None.

    Called by `start_job`, by a finishing job (so the queue advances without the app) and by
    `refresh_stale`. A queued job whose secrets are not at hand (they are never stored) fails
    with a message asking to resume it with them.
    """
    while True:
        with store.transaction():
            if running_torch_job(store) is not None:
                return None
            line = torch_queue(store)
            if not line:
                return None
            job = line[0]
            env = (env_by_job or {}).get(job.id, {})
            inherited = child_env(store.workspace, {})
            missing = [n for n in job.env_names if n not in env and n not in inherited]
            if missing:
                failed = dict(status="failed", error=_needs(missing), ended_at=utc_now())
                update_job(store, job.id, **failed)
                continue
            _claim(store, job.id, turn=True)
        spawn(store, job, env)
        return fetch_job(store, job.id)


def _needs(names: list[str]) -> str:
    return (
        f"this job needs {' and '.join(names)} again (keys are never stored): "
        "set it in the environment / type it in"
    )


# Watching -----------------------------------------------------------------------------------


def get_job(store: Store, job_id: int, owner: str = LOCAL_OWNER) -> Job:
    """Job `job_id` of `owner`, its status refreshed; `UserError` if there is none of theirs."""
    refresh_stale(store)
    rows = store.read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ? AND owner = ?", (job_id, owner))
    if not rows:
        raise UserError(f"no job {job_id}")
    return job_from_row(rows[0], store.workspace)


def list_jobs(
    store: Store,
    owner: str = LOCAL_OWNER,
    experiment_id: int | None = None,
    statuses: Iterable[str] | None = None,
) -> list[Job]:
    """The jobs of `owner`, newest first, optionally of one experiment or some statuses."""
    refresh_stale(store)
    where, params = ["owner = ?"], [owner]
    if experiment_id is not None:
        where.append("experiment_id = ?")
        params.append(experiment_id)
    if statuses is not None:
        wanted = list(statuses)
        where.append(f"status IN ({', '.join('?' * len(wanted))})")
        params += wanted
    sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC"
    return [job_from_row(row, store.workspace) for row in store.read(sql, tuple(params))]


def active_jobs_of(store: Store, fair_key: str) -> int:
    """How many jobs that count for `fair_key` (of any owner) are queued or running."""
    refresh_stale(store)
    sql = "SELECT COUNT(*) FROM jobs WHERE fair_key = ? AND status IN ('queued', 'running')"
    return int(store.read(sql, (fair_key,))[0][0])


def refresh_stale(
    store: Store,
    *,
    stale_after: float | None = None,
    dead_after: float | None = None,
    grace: float | None = None,
) -> list[int]:
    """Fail running jobs that stopped without finishing; return their ids.

    A job fails when its heartbeat is older than `stale_after` and its process is gone, or older
    than `dead_after` whatever the process (it hangs: it is killed). A job whose cancel is older
    than `grace` gets SIGTERM, and SIGKILL after three times that. Advances the torch queue.
    """
    stale = STALE_AFTER_S if stale_after is None else stale_after
    dead = DEAD_AFTER_S if dead_after is None else dead_after
    grace = CANCEL_GRACE_S if grace is None else grace
    reap()
    now, changed = time.time(), []
    rows = store.read(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running'"
        " OR (status = 'queued' AND pid IS NOT NULL)"
    )
    for job in (job_from_row(row, store.workspace) for row in rows):
        age = now - (job.heartbeat_at or 0.0)
        alive = job.pid is not None and pid_alive(job.pid, job.id)
        if job.cancel_requested and alive:
            escalate_cancel(job, now, grace)
        elif job.cancel_requested and job.pid is not None:
            if update_job(store, job.id, "status IN ('queued', 'running')", **_cancelled()):
                changed.append(job.id)
            continue
        elif job.pid is not None and not alive and job.started_at is None:
            # It never reached its work (a bad argument, an import error): its log says why.
            early = dict(status="failed", error=exit_reason(job), ended_at=utc_now())
            if update_job(store, job.id, "status = 'running' AND started_at IS NULL", **early):
                changed.append(job.id)
            continue
        if (age > stale and not alive) or age > dead:
            if alive:
                signal_group(job, signal.SIGKILL)
            fresh = f"heartbeat_at IS NULL OR heartbeat_at < {now - min(stale, dead)!r}"
            stopped = dict(status="failed", error=STALE_ERROR, ended_at=utc_now())
            where = f"status IN ('queued', 'running') AND ({fresh})"
            if update_job(store, job.id, where, **stopped):
                changed.append(job.id)
    if changed:
        start_queued(store)
    return changed


def _cancelled() -> dict[str, Any]:
    return dict(status="cancelled", cancel_requested=1, ended_at=utc_now())


# Cancel and resume --------------------------------------------------------------------------


def cancel_job(
    store: Store,
    job_id: int,
    owner: str = LOCAL_OWNER,
    *,
    wait: bool = False,
    grace: float = CANCEL_GRACE_S,
) -> Job:
    """Ask job `job_id` to stop; a queued job is cancelled at once. Return the job.

    The job stops at its next `cancelled()` check. With `wait`, block until it has stopped:
    after `grace` seconds it gets SIGTERM, after another `grace` SIGKILL. Without, `refresh_stale`
    (run by every list and get) escalates the same way. `UserError` if the job already ended.
    """
    job = get_job(store, job_id, owner)
    if job.ended:
        raise UserError(f"job {job_id} already ended ({job.status}): nothing to cancel")
    if update_job(store, job_id, "status = 'queued' AND pid IS NULL", **_cancelled()):
        return fetch_job(store, job_id)
    update_job(store, job_id, cancel_requested=1)
    cancel_file = job.run_dir / CANCEL_NAME
    if not cancel_file.exists():  # its age is the time since the first request
        cancel_file.write_text(f"{utc_now()}\n")
    if wait:
        _wait_stopped(store, job_id, grace)
    return fetch_job(store, job_id)


def _wait_stopped(store: Store, job_id: int, grace: float) -> None:
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None:
            signal_group(fetch_job(store, job_id), signum)
        if _stops_within(store, job_id, grace):
            break
    # A job that stopped on its own recorded how it ended; one that was killed did not.
    update_job(store, job_id, "status IN ('queued', 'running')", **_cancelled())


def _stops_within(store: Store, job_id: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = fetch_job(store, job_id)
        if (job.pid is None and job.ended) or (job.pid and not pid_alive(job.pid, job.id)):
            return True
        time.sleep(0.05)
    return False


def resume_job(
    store: Store, job_id: int, owner: str = LOCAL_OWNER, env: dict[str, str] | None = None
) -> Job:
    """Start failed or cancelled job `job_id` again: same id, run folder and argv. Return it.

    Every name in the job's `env_names` must be given in `env` (keys are never stored). The
    commands jobs run are idempotent, so the job continues where it stopped.
    """
    job = get_job(store, job_id, owner)
    if job.status not in ("failed", "cancelled"):
        state = "is still " + job.status if not job.ended else "already finished"
        raise UserError(f"job {job_id} {state}: only a failed or cancelled job can be resumed")
    env = {name: value for name, value in (env or {}).items() if value}
    if missing := [name for name in job.env_names if name not in env]:
        raise UserError(_needs(missing))
    # A job marks itself cancelled/failed just before its process exits: give it a moment.
    deadline = time.monotonic() + 10
    while job.pid is not None and pid_alive(job.pid, job.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    if job.pid is not None and pid_alive(job.pid, job.id):
        raise UserError(f"job {job_id} is still stopping (process {job.pid}): try again shortly")
    reset = dict(status="queued", error=None, cancel_requested=0, pid=None, started_at=None)
    reset["ended_at"] = None
    if not update_job(store, job_id, "status IN ('failed', 'cancelled')", **reset):
        raise UserError(f"job {job_id} was resumed already")
    (job.run_dir / CANCEL_NAME).unlink(missing_ok=True)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    append_text(job.run_dir / LOG_NAME, f"--- resumed at {utc_now()} ---\n")
    _launch(store, fetch_job(store, job_id), env)
    return fetch_job(store, job_id)
