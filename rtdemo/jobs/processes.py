"""The processes of background jobs: spawning, checking, signalling and reaping them.

A job runs as `python -m rtdemo <argv...> --job-id N` in a session of its own, so that it survives
whoever started it and a signal reaches whatever it started too:

    spawn(store, job, env={"OPENAI_API_KEY": key})   # the claimed job starts; its pid is recorded
    pid_alive(job.pid, job.id)                       # still running this job?
    signal_group(job, signal.SIGTERM)

Secrets reach a job through its environment only (`child_env`), and only the names of those it
was given are passed on, so that the jobs it starts in turn do not inherit them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.jobs.files import CANCEL_NAME, LOG_NAME, tail_log
from rtdemo.jobs.records import Job, update_job, utc_now
from rtdemo.workspace.store import Store

# Names (never values) of the secrets a job was given, so that jobs it starts do not inherit them.
SECRET_NAMES_VAR = "RTDEMO_JOB_SECRET_NAMES"

# Popen objects of the jobs this process started, so that their exit is reaped, not left a zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


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


def signal_group(job: Job, signum: int) -> None:
    """Send `signum` to the job's process group (the job and whatever it started)."""
    if job.pid is None or not pid_alive(job.pid, job.id):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(job.pid) == job.pid:  # its own session, as spawn made it
            os.killpg(job.pid, signum)
        else:
            os.kill(job.pid, signum)


def escalate_cancel(job: Job, now: float, grace: float) -> None:
    """SIGTERM a job whose cancel is older than `grace` seconds, SIGKILL it after `3 * grace`."""
    try:
        asked = (job.run_dir / CANCEL_NAME).stat().st_mtime
    except FileNotFoundError:
        return
    if now - asked > 3 * grace:
        signal_group(job, signal.SIGKILL)
    elif now - asked > grace:
        signal_group(job, signal.SIGTERM)


def child_env(workspace: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment of a job of `workspace`: ours, less inherited secrets, plus `env`."""
    child = dict(os.environ)
    # A job starting the next queued job must not hand it the secrets it was given itself.
    for name in child.pop(SECRET_NAMES_VAR, "").split(","):
        child.pop(name, None)
    child.update(env)
    if env:
        child[SECRET_NAMES_VAR] = ",".join(sorted(env))
    # The child runs this very copy of rtdemo, installed or not.
    root = str(Path(__file__).resolve().parents[2])
    child["PYTHONPATH"] = os.pathsep.join(filter(None, [root, child.get("PYTHONPATH")]))
    child["RTDEMO_HOME"] = str(workspace)
    child["PYTHONUNBUFFERED"] = "1"  # log lines arrive as they are printed
    return child


def spawn(store: Store, job: Job, env: dict[str, str]) -> None:
    """Start the claimed job `job` as a detached process; it survives whoever started it.

    Records its pid; if it cannot start, marks it failed and raises `UserError`.
    """
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
                env=child_env(store.workspace, env),
                close_fds=True,
            )
    except OSError as err:
        failed = dict(status="failed", error=f"could not start: {err}", ended_at=utc_now())
        update_job(store, job.id, **failed)
        raise UserError(f"could not start job {job.id}: {err}") from err
    _CHILDREN[process.pid] = process
    update_job(store, job.id, "pid IS NULL", pid=process.pid)


def reap() -> None:
    """Collect the exit status of this process's finished jobs, so none lingers as a zombie."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def exit_reason(job: Job) -> str:
    """Why a job that never reached its work stopped: the last line of its log."""
    lines = [line for line in tail_log(job, 10).splitlines() if line.strip()]
    last = lines[-1].strip()[:300] if lines else "no output"
    return f"the job exited before it started: {last} (see rtdemo jobs show {job.id})"
