"""The processes of background jobs: spawning, checking, signalling and reaping them.

A job runs as `python -m rtdemo <argv...> --job-id N` in a session of its own, so that it survives
whoever started it and a signal reaches whatever it started too:

    spawn(store, job, env={"OPENAI_API_KEY": key})   # the claimed job starts; its pid is recorded
    pid_alive(job.pid, job.id)                       # still running this job?
    signal_group(job, signal.SIGTERM)

A job's environment is not a copy of ours (`child_env`): only the variables on an allow-list
(`inherited`: the system's, Python's, torch's and the thread settings, the Hugging Face cache,
endpoint and offline settings, rtdemo's own settings) pass, never one whose name says it is a
secret (`SECRET_NAME`: HF_TOKEN, OPENAI_API_KEY, RTDEMO_OWNER_KEY, OAUTH_CLIENT_SECRET...), plus
what the job was given explicitly. So a server's keys and tokens never reach the jobs its users
start, and a job's own secrets never reach the jobs it starts in turn (the next one in the queue).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.jobs.files import CANCEL_NAME, LOG_NAME, tail_log
from rtdemo.jobs.records import Job, update_job, utc_now
from rtdemo.workspace.store import Store

# What a job inherits from the environment of whoever starts it: these names, and names with these
# prefixes, unless `SECRET_NAME` matches. Everything else it needs it is given (`spawn`'s `env`).
INHERITED_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR",
        "TEMP", "TMP", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SYSTEM",  # SYSTEM=spaces: on Spaces
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
        "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TOKENIZERS_PARALLELISM", "COVERAGE_PROCESS_START",
        "HF_HOME", "HF_ENDPOINT", "HF_ASSETS_CACHE", "HF_MODULES_CACHE",
    }
)  # fmt: skip
INHERITED_PREFIXES = (
    "LC_", "PYTHON", "CUDA_", "NVIDIA_", "NCCL_", "TORCH", "PYTORCH_", "OMP_", "MKL_", "KMP_",
    "OPENBLAS_", "ACCELERATE_", "TRANSFORMERS_", "HF_HUB_", "HF_DATASETS_", "HF_XET_", "RTDEMO_",
)  # fmt: skip
SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?|AUTH)(?:_|$)", re.IGNORECASE
)
NOT_SECRETS = frozenset({"HF_HUB_DISABLE_IMPLICIT_TOKEN"})  # settings named after a secret

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


def inherited(name: str) -> bool:
    """Whether a job inherits the variable `name` from whoever starts it (module docstring)."""
    listed = name in INHERITED_NAMES or name.startswith(INHERITED_PREFIXES)
    return listed and (name in NOT_SECRETS or not SECRET_NAME.search(name))


def child_env(workspace: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment of a job of `workspace`: the allow-listed part of ours, plus `env`."""
    child = {name: value for name, value in os.environ.items() if inherited(name)}
    child.update(env)
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
