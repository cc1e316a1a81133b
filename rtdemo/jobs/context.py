"""The child's side of a background job: what a command running as job N uses.

`job_context(workspace, job_id)` returns a `JobContext` (progress, log, cancel
checks, heartbeat, final status) for a job, or a no-op `ForegroundContext` when the command runs in
the foreground; the parent's side (start, watch, cancel, resume) is `rtdemo.jobs.runner`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from rtdemo.errors import UserError
from rtdemo.jobs.files import CANCEL_NAME, LOG_NAME, PROGRESS_NAME, append_text, last_progress
from rtdemo.jobs.processes import pid_alive
from rtdemo.jobs.records import Job, Status, fetch_job, update_job, utc_now
from rtdemo.jobs.runner import start_queued
from rtdemo.workspace.store import Store

HEARTBEAT_S = 2.0  # overridden by $RTDEMO_JOB_HEARTBEAT_S (tests make it small)


class JobCancelled(Exception):
    """Raised by `JobContext.check_cancelled()`; the job ends cancelled."""


class JobContext:
    """What a command running as job N uses: progress, log, cancel checks, heartbeat, status.

    `JobContext.attach(workspace, job_id)` marks the job running; leaving the `with` block marks it
    done, failed (with the exception's message) or cancelled (if the work saw a cancel request and
    stopped). SIGTERM counts as a cancel request.
    """

    def __init__(self, store: Store, job: Job, heartbeat_s: float, own_store: bool) -> None:
        self.store, self.job, self.heartbeat_s = store, job, heartbeat_s
        self._own_store = own_store
        self._stop = threading.Event()
        self._cancel_asked = threading.Event()  # set by SIGTERM or by the heartbeat's reading
        self._cancel_seen = False
        self._previous_handler: Any = None
        self._thread = threading.Thread(target=self._beat, name=f"job-{job.id}", daemon=True)

    @classmethod
    def attach(
        cls, workspace: Path | str, job_id: int, *, heartbeat_s: float | None = None
    ) -> JobContext:
        """Take over job `job_id` of the store in `workspace` as this process; mark it running."""
        if heartbeat_s is None:
            heartbeat_s = float(os.environ.get("RTDEMO_JOB_HEARTBEAT_S", HEARTBEAT_S))
        store = Store(Path(workspace))
        try:
            job = fetch_job(store, job_id)
            other = job.pid is not None and job.pid != os.getpid()
            if other and job.status == "running" and pid_alive(job.pid, job.id):
                raise UserError(f"job {job_id} is already running in process {job.pid}")
            running = dict(status="running", pid=os.getpid(), started_at=utc_now(), ended_at=None)
            update_job(store, job_id, **running, heartbeat_at=time.time(), error=None)
            context = cls(store, fetch_job(store, job_id), heartbeat_s, own_store=True)
        except BaseException:
            store.close()
            raise
        context._start()
        return context

    @property
    def run_dir(self) -> Path:
        """The job's run folder: results the job writes go here."""
        return self.job.run_dir

    def _start(self) -> None:
        if self.job.cancel_requested:
            self._cancel_asked.set()
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._thread.start()

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._cancel_asked.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                update_job(self.store, self.job.id, heartbeat_at=time.time())
                if fetch_job(self.store, self.job.id).cancel_requested:
                    self._cancel_asked.set()
            except Exception as err:  # a missed beat is not fatal; many in a row make it stale
                self.log(f"heartbeat failed: {err}")

    def progress(self, **fields: Any) -> None:
        """Append a progress record (done, total, failures, spend, rate, eta, ...) with its time."""
        record = {"time": round(time.time(), 3), **fields}
        line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
        append_text(self.run_dir / PROGRESS_NAME, line)

    def last_progress(self) -> dict[str, Any] | None:
        """The job's latest progress record (from an earlier run too): where a resume starts."""
        return last_progress(self.job)

    def log(self, message: str) -> None:
        """Append a timestamped line to the job's log."""
        append_text(self.run_dir / LOG_NAME, f"[{utc_now()}] {message}\n")

    def cancelled(self) -> bool:
        """Whether a cancel was requested (cancel file, store flag or SIGTERM); cheap to call."""
        if self._cancel_asked.is_set() or (self.run_dir / CANCEL_NAME).exists():
            self._cancel_seen = True
        return self._cancel_seen

    def check_cancelled(self) -> None:
        """Raise `JobCancelled` if a cancel was requested (the context ends the job cancelled)."""
        if self.cancelled():
            raise JobCancelled(f"job {self.job.id} cancelled")

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on a cancel request; whether it was cancelled."""
        deadline = time.monotonic() + seconds
        while not self.cancelled() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        return self.cancelled()

    def close(self, error: BaseException | None = None) -> Status:
        """Stop the heartbeat, record how the job ended, start the next queued job; the status."""
        self._stop.set()
        self._thread.join()
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
        status: Status = "done"
        message = None
        if isinstance(error, JobCancelled) or (error is None and self._cancel_seen):
            status = "cancelled"
        elif error is not None:
            status = "failed"
            text, name = str(error), type(error).__name__
            message = text if isinstance(error, UserError) else f"{name}: {text}" if text else name
        try:
            ended = dict(status=status, error=message, ended_at=utc_now())
            update_job(self.store, self.job.id, **ended, heartbeat_at=time.time())
            try:
                start_queued(self.store)
            except Exception as err:  # the next job's problem must not change how this one ended
                self.log(f"could not start the next queued job: {err}")
        finally:
            if self._own_store:
                self.store.close()
        return status

    def __enter__(self) -> JobContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.close(exc)
        return isinstance(exc, JobCancelled)


class ForegroundContext:
    """The stand-in for `JobContext` when a command runs in the foreground (no `--job-id`)."""

    def progress(self, **fields: Any) -> None:
        """Nothing to record: the command shows its own progress."""

    def last_progress(self) -> dict[str, Any] | None:
        """None: a foreground run has no earlier progress."""
        return None

    def log(self, message: str) -> None:
        """Print to stderr."""
        print(message, file=sys.stderr)

    def cancelled(self) -> bool:
        """False: a foreground run stops with Ctrl-C."""
        return False

    def check_cancelled(self) -> None:
        """Never raises."""

    def sleep(self, seconds: float) -> bool:
        """Sleep; never cancelled."""
        time.sleep(seconds)
        return False

    def __enter__(self) -> ForegroundContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def job_context(workspace: Path | str, job_id: int | None) -> JobContext | ForegroundContext:
    """`JobContext.attach(workspace, job_id)`, or a `ForegroundContext` when `job_id` is None."""
    return ForegroundContext() if job_id is None else JobContext.attach(workspace, job_id)
