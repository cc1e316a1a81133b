"""Data-parallel training: `rtdemo train --processes N` re-run under `torchrun`, N processes.

    rtdemo train --experiment demo --run cot --format cot --processes 2 --batch-size 16

With N > 1 (the default on a machine with several GPUs), the `rtdemo train` process (the
foreground command, or the background job's process) validates the settings, records the run and
then starts

    python -m torch.distributed.run --nproc_per_node N --standalone -m -- rtdemo train ...

(`launcher_argv`), the same command line without `--job-id`/`--background`. Each worker sees
`LOCAL_RANK`/`WORLD_SIZE` (`in_launched_process`) and trains directly: the Trainer wraps the model
in DDP, with NCCL on CUDA and gloo on CPU (accelerate's choice when there is no GPU), and each
worker takes `--batch-size / N` examples per step so that the global batch stays `--batch-size`.
Rank 0 alone writes progress, checkpoints, `train_result.json` and `final/`; the launching process
waits, turns its job's cancel request into the stop file every worker polls (`RTDEMO_STOP_FILE`;
the workers agree on the step to stop at), and reads `train_result.json` when they are done.

Why torchrun and not `accelerate launch`: it ships with torch (no accelerate config file, no
defaults warnings), `--standalone` picks a free local rendezvous port by itself (two runs on one
machine do not collide), and the Trainer's accelerate state reads the same environment variables
either way. `accelerate launch --multi_gpu --num_processes N -m rtdemo ...` works too (it runs
torchrun underneath).

Threads: each worker gets `OMP_NUM_THREADS = cores // N` (at least 1) unless set; two workers
with two threads each on two cores run many times slower (STACK.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: Environment variables the launched workers read (set by `launcher_env`).
STOP_FILE_VAR = "RTDEMO_STOP_FILE"  # workers stop (and save) at the next step once it exists
PROGRESS_FILE_VAR = "RTDEMO_PROGRESS_FILE"  # rank 0 appends progress records here (a job's file)
TERMINATE_GRACE_S = 30.0


def device_count() -> int:
    """The number of CUDA devices (0 on a CPU-only machine)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_processes() -> int:
    """Training processes when none are asked for: one per GPU when there are several, else 1."""
    count = device_count()
    return count if count > 1 else 1


def in_launched_process() -> bool:
    """Whether this process is a worker started by torchrun / accelerate launch."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """The number of workers of this launch (1 outside one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This worker's global rank (0 outside a launch)."""
    return int(os.environ.get("RANK", "0"))


def launcher_argv(processes: int, argv: Sequence[str]) -> list[str]:
    """The command that runs `python -m rtdemo <argv>` in `processes` local workers (torchrun)."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1 (got {processes})")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--standalone",
        "-m",
        # Without "--", torchrun's parser reads the command's own flags as abbreviations of its
        # options (`--run` is ambiguous with `--run-path`) and exits before starting anything.
        "--",
        "rtdemo",
        *map(str, argv),
    ]


def worker_argv(argv: Sequence[str], workspace: Path | None = None) -> list[str]:
    """`argv` for the workers: without `--job-id N` and `--background` (the launching process
    owns the job), with `--workspace` when given."""
    out: list[str] = []
    skip = False
    for arg in map(str, argv):
        if skip:
            skip = False
        elif arg == "--job-id":
            skip = True
        elif arg.startswith("--job-id=") or arg == "--background":
            continue
        else:
            out.append(arg)
    given = any(a == "--workspace" or a.startswith("--workspace=") for a in out)
    if workspace is not None and not given:
        out += ["--workspace", str(workspace)]
    return out


def threads_per_process(processes: int) -> int:
    """CPU threads each of `processes` workers may use without oversubscribing the cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // processes)


def launcher_env(
    processes: int, stop_file: Path, progress_file: Path | None = None
) -> dict[str, str]:
    """The workers' environment: this one, plus threads, this copy of rtdemo, stop and progress
    files."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_process(processes)))
    root = str(Path(__file__).resolve().parents[2])  # the workers import this very copy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env[STOP_FILE_VAR] = str(stop_file)
    env.pop(PROGRESS_FILE_VAR, None)
    if progress_file is not None:
        env[PROGRESS_FILE_VAR] = str(progress_file)
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # torchrun sets its own
    return env


def run_launched(
    processes: int,
    argv: Sequence[str],
    *,
    cancelled: Callable[[], bool] = lambda: False,
    progress_file: Path | None = None,
    poll_s: float = 0.2,
) -> int:
    """Run `argv` (an `rtdemo` command line) in `processes` workers; return the exit code.

    While they run, `cancelled()` is polled; once True, the stop file is created and the workers
    stop at their next step, saving a checkpoint. If this process is interrupted (Ctrl-C, an
    error), the launcher gets SIGTERM (it ends its workers), then SIGKILL after a grace period.
    """
    with tempfile.TemporaryDirectory(prefix="rtdemo-launch-") as tmp:
        stop_file = Path(tmp) / "stop"
        process = subprocess.Popen(
            launcher_argv(processes, argv),
            env=launcher_env(processes, stop_file, progress_file),
            stdin=subprocess.DEVNULL,
        )
        try:
            while process.poll() is None:
                if not stop_file.exists() and cancelled():
                    stop_file.write_text("stop\n")
                time.sleep(poll_s)
        except BaseException:
            _terminate(process)
            raise
        return process.returncode


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # torchrun forwards it to its workers' sessions
    try:
        process.wait(TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# The workers' side ----------------------------------------------------------------------------


def stop_requested() -> bool:
    """Whether the launching process asked the workers to stop (its stop file exists)."""
    path = os.environ.get(STOP_FILE_VAR)
    return bool(path) and Path(path).exists()


def progress_writer() -> Callable[..., None] | None:
    """A `progress(**fields)` appending records like a job's own, when a job launched us."""
    path = os.environ.get(PROGRESS_FILE_VAR)
    if not path:
        return None
    import json

    def write(**fields) -> None:
        line = json.dumps({"time": round(time.time(), 3), **fields}, default=str) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    return write


def exit_with_launcher(poll_s: float = 1.0) -> None:
    """End this worker if its launcher dies (SIGKILL of the job's process group).

    torchrun starts each worker in a session of its own, so a signal to the job's group reaches
    the launcher only; without this, the workers would train on as orphans.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()
