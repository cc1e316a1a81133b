"""Background jobs: one mechanism for everything slow (generation, training, evaluation, pushing).

A job is a detached subprocess `python -m rtdemo <argv...> --job-id N`, recorded in the `jobs`
table of the workspace store with its owner, kind and status, and given a run folder
`<workspace>/runs/N-<kind>/` holding `log.txt` (the child's stdout and stderr), `progress.jsonl`
(one JSON object per progress report, with its `time`) and, once a cancel was asked for, `cancel`.

The side that starts and watches jobs (the app, the CLI):

    job = start_job(store, "generate", ["generate", "--task", "coin_flip", ...],
                    env={"OPENAI_API_KEY": key}, env_names=["OPENAI_API_KEY"])
    last_progress(get_job(store, job.id))           # {"time": ..., "done": 12, "total": 50, ...}
    cancel_job(store, job.id)
    resume_job(store, job.id, env={"OPENAI_API_KEY": key})   # keys are asked for again

The command the job runs:

    with job_context(workspace, args.job_id) as ctx:  # a no-op context when job_id is None
        for i, item in enumerate(items):
            if ctx.cancelled():
                break
            ...
            ctx.progress(done=i + 1, total=len(items))

Secrets reach a job through its environment only: never the database, argv, the run folder or logs.
Torch workloads (`Job.uses_torch`: training, evaluation, and generation with a local model as the
teacher) run one at a time per machine (two of them on two cores thrash); other jobs start at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rtdemo.errors import UserError
from rtdemo.store import Store

Status = Literal["queued", "running", "done", "failed", "cancelled"]
ENDED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
TORCH_KINDS: frozenset[str] = frozenset({"train", "evaluate"})
LOCAL_MODEL_TEACHERS: frozenset[str] = frozenset({"hf"})  # `generate --teacher` runs torch here
LOCAL_OWNER = "local"

RUNS_DIR = "runs"
LOG_NAME = "log.txt"
PROGRESS_NAME = "progress.jsonl"
CANCEL_NAME = "cancel"

HEARTBEAT_S = 2.0  # overridden by $RTDEMO_JOB_HEARTBEAT_S (tests make it small)
STALE_AFTER_S = 30.0  # no heartbeat for this long and no process: the job stopped
DEAD_AFTER_S = 300.0  # no heartbeat for this long even though the process exists: hung
CANCEL_GRACE_S = 10.0  # how long a cancelled job may take to stop before SIGTERM
STALE_ERROR = "the job stopped without finishing (killed or machine restarted): resume it"
# Names (never values) of the secrets a job was given, so that jobs it starts do not inherit them.
SECRET_NAMES_VAR = "RTDEMO_JOB_SECRET_NAMES"

_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_SECRET_FLAG = re.compile(
    r"--?(?:[a-z0-9]+[-_])*(?:api[-_]?key|key|token|secret|password|passwd)(?:=.*)?", re.I
)
_SECRET_VALUE = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,})")
_COLUMNS = (
    "id, owner, experiment_id, kind, status, argv, env_names, pid, heartbeat_at, run_dir, error,"
    " cancel_requested, created_at, started_at, ended_at"
)
# Popen objects of the jobs this process started, so that their exit is reaped, not left a zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


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


class JobCancelled(Exception):
    """Raised by `JobContext.check_cancelled()` (`rtdemo.job_context`); the job ends cancelled."""


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


def running_torch_job(store: Store) -> Job | None:
    """The torch workload running on this machine (of any owner), or None."""
    rows = store.read(f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY id")
    return next((j for j in (_job(r, store.workspace) for r in rows) if j.uses_torch), None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _job(row: Sequence[Any], workspace: Path) -> Job:
    values = list(row)
    values[5], values[6] = json.loads(values[5]), json.loads(values[6])
    values[9] = workspace / values[9]
    values[11] = bool(values[11])
    return Job(*values)


def _fetch(store: Store, job_id: int) -> Job:
    rows = store.read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
    if not rows:
        raise UserError(f"no job {job_id}")
    return _job(rows[0], store.workspace)


def _update(store: Store, job_id: int, where: str = "", **values: Any) -> bool:
    """Set columns of job `job_id` (only if `where` holds too); whether a row changed."""
    sets = ", ".join(f"{column} = ?" for column in values)
    sql = f"UPDATE jobs SET {sets} WHERE id = ?" + (f" AND ({where})" if where else "")
    with store.transaction() as conn:
        return conn.execute(sql, (*values.values(), job_id)).rowcount > 0


def _append(path: Path, text: str) -> None:
    """Append in one write to a file opened with O_APPEND, so lines of writers never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def check_argv(argv: Iterable[str]) -> None:
    """Raise `ValueError` if an argument looks like a secret: argv is stored and shown."""
    for arg in argv:
        if _SECRET_FLAG.fullmatch(arg) or _SECRET_VALUE.search(arg):
            raise ValueError(
                f"job arguments are stored and shown, so they must not carry secrets "
                f"({arg.split('=')[0]!r}): pass keys through env= instead"
            )


# Processes ----------------------------------------------------------------------------------


def pid_alive(pid: int, job_id: int | None = None) -> bool:
    """Whether process `pid` is running (not a zombie) and, if `job_id` is given, runs that job.

    Reaps the process if it is a child of ours. The command-line check (Linux) catches a process
    id reused by an unrelated process after a restart.
    """
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): os.kill said it exists
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    return job_id is None or f"\0--job-id\0{job_id}\0".encode() in b"\0" + cmdline


def _signal_group(job: Job, signum: int) -> None:
    """Send `signum` to the job's process group (the job and whatever it started)."""
    if job.pid is None or not pid_alive(job.pid, job.id):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(job.pid) == job.pid:  # its own session, as _spawn made it
            os.killpg(job.pid, signum)
        else:
            os.kill(job.pid, signum)


def _child_env(workspace: Path, env: dict[str, str]) -> dict[str, str]:
    child = dict(os.environ)
    # A job starting the next queued job must not hand it the secrets it was given itself.
    for name in child.pop(SECRET_NAMES_VAR, "").split(","):
        child.pop(name, None)
    child.update(env)
    if env:
        child[SECRET_NAMES_VAR] = ",".join(sorted(env))
    # The child runs this very copy of rtdemo, installed or not.
    root = str(Path(__file__).resolve().parents[1])
    child["PYTHONPATH"] = os.pathsep.join(filter(None, [root, child.get("PYTHONPATH")]))
    child["RTDEMO_HOME"] = str(workspace)
    child["PYTHONUNBUFFERED"] = "1"  # log lines arrive as they are printed
    return child


def _spawn(store: Store, job: Job, env: dict[str, str]) -> None:
    """Start the claimed job `job` as a detached process; it survives whoever started it."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "rtdemo", *job.argv, "--job-id", str(job.id)]
    try:
        with open(job.run_dir / LOG_NAME, "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_child_env(store.workspace, env),
                close_fds=True,
            )
    except OSError as err:
        _update(store, job.id, status="failed", error=f"could not start: {err}", ended_at=_now())
        raise UserError(f"could not start job {job.id}: {err}") from err
    _CHILDREN[process.pid] = process
    _update(store, job.id, "pid IS NULL", pid=process.pid)


def _claim(store: Store, job_id: int) -> bool:
    """Mark queued job `job_id` running before spawning it; False if it is no longer queued."""
    # The claim's heartbeat is the baseline for stale detection until the child beats itself.
    return _update(store, job_id, "status = 'queued'", status="running", heartbeat_at=time.time())


# Starting -----------------------------------------------------------------------------------


def start_job(
    store: Store,
    kind: str,
    argv: list[str],
    *,
    owner: str = LOCAL_OWNER,
    experiment_id: int | None = None,
    env: dict[str, str] | None = None,
    env_names: Iterable[str] = (),
) -> Job:
    """Record a job and start `python -m rtdemo <argv...> --job-id N` detached; return it.

    `env` goes to the child's environment only; `env_names` (names, not values) is stored so that
    a resume can ask for them again. A job of a `TORCH_KINDS` kind stays queued while another
    torch job runs. Raises `ValueError` for a malformed kind or an argv that carries a secret.
    """
    argv = [str(arg) for arg in argv]
    check_argv(argv)
    if not _KIND.fullmatch(kind):
        raise ValueError(f"job kind {kind!r}: use lowercase letters, digits, '-' or '_'")
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO jobs (owner, experiment_id, kind, status, argv, env_names, created_at)"
            " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
            (
                owner,
                experiment_id,
                kind,
                json.dumps(argv),
                json.dumps(sorted(set(env_names))),
                _now(),
            ),
        )
        job_id = int(cursor.lastrowid or 0)
        run_dir = f"{RUNS_DIR}/{job_id}-{kind}"
        conn.execute("UPDATE jobs SET run_dir = ? WHERE id = ?", (run_dir, job_id))
    (store.workspace / run_dir).mkdir(parents=True, exist_ok=True)
    _launch(store, _fetch(store, job_id), env or {})
    return _fetch(store, job_id)


def _launch(store: Store, job: Job, env: dict[str, str]) -> None:
    if job.uses_torch:
        start_queued(store, env_by_job={job.id: env})
    elif _claim(store, job.id):
        _spawn(store, job, env)


def start_queued(
    store: Store, *, env_by_job: dict[int, dict[str, str]] | None = None
) -> Job | None:
    """Start the oldest queued torch job if no torch job is running; return it, or None.

    Called by `start_job`, by a finishing job (so the queue advances without the app) and by
    `refresh_stale`. A queued job whose secrets are not at hand (they are never stored) fails
    with a message asking to resume it with them.
    """
    while True:
        with store.transaction() as conn:
            sql = f"SELECT {_COLUMNS} FROM jobs WHERE status IN ('running', 'queued') ORDER BY id"
            pending = [_job(row, store.workspace) for row in conn.execute(sql)]
            torch_jobs = [j for j in pending if j.uses_torch]
            if any(j.status == "running" for j in torch_jobs):
                return None
            job = next((j for j in torch_jobs if j.status == "queued"), None)
            if job is None:
                return None
            env = (env_by_job or {}).get(job.id, {})
            inherited = _child_env(store.workspace, {})
            missing = [n for n in job.env_names if n not in env and n not in inherited]
            if missing:
                _update(store, job.id, status="failed", error=_needs(missing), ended_at=_now())
                continue
            _claim(store, job.id)
        _spawn(store, job, env)
        return _fetch(store, job.id)


def _needs(names: list[str]) -> str:
    return (
        f"this job needs {' and '.join(names)} again (keys are never stored): "
        "set it in the environment / type it in"
    )


# Watching -----------------------------------------------------------------------------------


def get_job(store: Store, job_id: int, owner: str = LOCAL_OWNER) -> Job:
    """Job `job_id` of `owner`, its status refreshed; `UserError` if there is none of theirs."""
    refresh_stale(store)
    rows = store.read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND owner = ?", (job_id, owner))
    if not rows:
        raise UserError(f"no job {job_id}")
    return _job(rows[0], store.workspace)


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
    sql = f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC"
    return [_job(row, store.workspace) for row in store.read(sql, tuple(params))]


def _parse_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.split("\n")[:-1]:  # the last piece is empty or a line still being written
        with contextlib.suppress(ValueError):
            if isinstance(record := json.loads(line), dict):
                records.append(record)
    return records


def read_progress(job: Job) -> list[dict[str, Any]]:
    """Every progress record of `job`, oldest first; a half-written last line is left out."""
    try:
        return _parse_lines((job.run_dir / PROGRESS_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


def _tail(path: Path, size: int) -> tuple[str, bool]:
    """The last `size` bytes of `path` as text, and whether that is the whole file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            start = max(0, f.tell() - size)
            f.seek(start)
            return f.read().decode("utf-8", errors="replace"), start == 0
    except FileNotFoundError:
        return "", True


def last_progress(job: Job) -> dict[str, Any] | None:
    """The latest complete progress record of `job`, or None; reads only the end of the file."""
    text, whole = _tail(job.run_dir / PROGRESS_NAME, 65536)
    records = _parse_lines(text if whole else text.partition("\n")[2])
    if not records and not whole:
        records = read_progress(job)
    return records[-1] if records else None


def tail_log(job: Job, lines: int = 50) -> str:
    """The last `lines` lines of the job's log."""
    text, whole = _tail(job.run_dir / LOG_NAME, max(lines, 1) * 400)
    kept = (text if whole else text.partition("\n")[2]).splitlines()
    return "\n".join(kept[-lines:]) if lines > 0 else ""


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
    _reap()
    now, changed = time.time(), []
    rows = store.read(
        f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running'"
        " OR (status = 'queued' AND pid IS NOT NULL)"
    )
    for job in (_job(row, store.workspace) for row in rows):
        age = now - (job.heartbeat_at or 0.0)
        alive = job.pid is not None and pid_alive(job.pid, job.id)
        if job.cancel_requested and alive:
            _escalate_cancel(job, now, grace)
        elif job.cancel_requested and job.pid is not None:
            if _update(store, job.id, "status IN ('queued', 'running')", **_cancelled()):
                changed.append(job.id)
            continue
        elif job.pid is not None and not alive and job.started_at is None:
            # It never reached its work (a bad argument, an import error): its log says why.
            early = dict(status="failed", error=_exit_reason(job), ended_at=_now())
            if _update(store, job.id, "status = 'running' AND started_at IS NULL", **early):
                changed.append(job.id)
            continue
        if (age > stale and not alive) or age > dead:
            if alive:
                _signal_group(job, signal.SIGKILL)
            fresh = f"heartbeat_at IS NULL OR heartbeat_at < {now - min(stale, dead)!r}"
            stopped = dict(status="failed", error=STALE_ERROR, ended_at=_now())
            if _update(store, job.id, f"status IN ('queued', 'running') AND ({fresh})", **stopped):
                changed.append(job.id)
    if changed:
        start_queued(store)
    return changed


def _reap() -> None:
    """Collect the exit status of this process's finished jobs, so none lingers as a zombie."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def _exit_reason(job: Job) -> str:
    lines = [line for line in tail_log(job, 10).splitlines() if line.strip()]
    last = lines[-1].strip()[:300] if lines else "no output"
    return f"the job exited before it started: {last} (see rtdemo jobs show {job.id})"


def _escalate_cancel(job: Job, now: float, grace: float) -> None:
    try:
        asked = (job.run_dir / CANCEL_NAME).stat().st_mtime
    except FileNotFoundError:
        return
    if now - asked > 3 * grace:
        _signal_group(job, signal.SIGKILL)
    elif now - asked > grace:
        _signal_group(job, signal.SIGTERM)


def _cancelled() -> dict[str, Any]:
    return dict(status="cancelled", cancel_requested=1, ended_at=_now())


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
    if _update(store, job_id, "status = 'queued' AND pid IS NULL", **_cancelled()):
        return _fetch(store, job_id)
    _update(store, job_id, cancel_requested=1)
    cancel_file = job.run_dir / CANCEL_NAME
    if not cancel_file.exists():  # its age is the time since the first request
        cancel_file.write_text(f"{_now()}\n")
    if wait:
        _wait_stopped(store, job_id, grace)
    return _fetch(store, job_id)


def _wait_stopped(store: Store, job_id: int, grace: float) -> None:
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None:
            _signal_group(_fetch(store, job_id), signum)
        if _stops_within(store, job_id, grace):
            break
    # A job that stopped on its own recorded how it ended; one that was killed did not.
    _update(store, job_id, "status IN ('queued', 'running')", **_cancelled())


def _stops_within(store: Store, job_id: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = _fetch(store, job_id)
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
    if not _update(store, job_id, "status IN ('failed', 'cancelled')", **reset):
        raise UserError(f"job {job_id} was resumed already")
    (job.run_dir / CANCEL_NAME).unlink(missing_ok=True)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    _append(job.run_dir / LOG_NAME, f"--- resumed at {_now()} ---\n")
    _launch(store, _fetch(store, job_id), env)
    return _fetch(store, job_id)


def job_context(workspace: Path | str, job_id: int | None) -> Any:
    """The context a command runs in: `rtdemo.job_context.JobContext` for job `job_id`, or a
    no-op `ForegroundContext` when `job_id` is None (the command runs in the foreground)."""
    from rtdemo.job_context import open_job_context

    return open_job_context(workspace, job_id)
