"""Small helpers the tests share: wait for a condition, kill the job processes a test left."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T], timeout: float = 60.0, what: str = "condition", every: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_job_processes(workspace: Path) -> None:
    """SIGKILL every job process of `workspace` still alive (jobs outlive their starter)."""
    from rtdemo.jobs import processes as job_processes
    from rtdemo.workspace.store import Store

    if not (Path(workspace) / "rtdemo.sqlite3").exists():
        return
    with Store(Path(workspace)) as store:
        rows = store.read("SELECT id, pid FROM jobs WHERE pid IS NOT NULL")
    for job_id, pid in rows:
        if job_processes.pid_alive(pid, job_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    for child in list(job_processes._CHILDREN.values()):  # reap them: no zombies left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    job_processes._CHILDREN.clear()


def run_teacher(teacher: Any, call: Callable[[Any], Any]) -> Any:
    """Run `call(teacher)` (a coroutine function) in a fresh event loop, then close the teacher's
    connections."""

    async def main():
        try:
            return await call(teacher)
        finally:
            await teacher.aclose()

    return asyncio.run(main())
