"""What every tab shares: who the owner is, where the data lives, and how work becomes a job.

Owners: on Spaces the logged-in Hugging Face user (`hf:<username>`); otherwise a random id kept in
the browser (`gr.BrowserState`), so a reload keeps it and two browsers are two owners. An id that
comes back from the browser is only trusted if it has the shape of one we made (`anon-` and 16 hex
digits): a visitor cannot claim `hf:someone`.

Jobs: a tab builds its stage's typed request and starts it with `AppContext.start`, through the
same `*_plan` function the CLI's `--background` calls (`rtdemo.jobs.plan`): its checks run first,
so bad settings fail in the tab before any job exists.

Messages: a handler's `UserError` is shown in its tab as a "⚠️ message" line (`shown_errors`).
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

from rtdemo.errors import UserError
from rtdemo.hosting.access import check_command
from rtdemo.hosting.quotas import LOGGED_IN_PREFIX, Quotas
from rtdemo.jobs.plan import JobPlan, start_plan
from rtdemo.jobs.records import Job
from rtdemo.jobs.runner import cancel_job, list_jobs
from rtdemo.workspace.store import Experiment, Store, workspace_path

_ANON = re.compile(r"anon-[0-9a-f]{16}")
ACTIVE = ("queued", "running")


def new_owner() -> str:
    """A fresh anonymous owner id."""
    return f"anon-{secrets.token_hex(8)}"


def resolve_owner(stored: str | None, username: str | None = None) -> str:
    """The owner of this browser: the logged-in user, else the id it kept, else a new id."""
    if username:
        return f"{LOGGED_IN_PREFIX}{username}"
    if isinstance(stored, str) and _ANON.fullmatch(stored):
        return stored
    return new_owner()


def check_owner(owner: str | None) -> str:
    """`owner`, or a `UserError` when the page has not finished loading its owner yet."""
    if not owner:
        raise UserError("the page is still starting: wait a second and try again (or reload)")
    return owner


@dataclass
class AppContext:
    """The settings every tab's handlers need; built once per app."""

    workspace: Path
    quotas: Quotas = field(default_factory=Quotas.from_env)

    @classmethod
    def from_env(cls, workspace: str | Path | None = None) -> AppContext:
        """The data folder from `workspace` or `$RTDEMO_HOME` (default ./rtdemo-data)."""
        return cls(workspace=workspace_path(workspace), quotas=Quotas.from_env())

    def store(self) -> Store:
        """A store on the workspace (use as a context manager)."""
        return Store(self.workspace)

    def experiment(self, store: Store, owner: str | None, name: str | None) -> Experiment:
        """The owner's experiment `name`, or a `UserError` that says to pick or create one."""
        owner = check_owner(owner)
        if not name:
            raise UserError("pick an experiment above, or create one from the Task tab's choice")
        return store.get_experiment(name, owner=owner)

    def active_jobs(self, store: Store, owner: str) -> list[Job]:
        """The owner's queued or running jobs."""
        return list_jobs(store, owner, statuses=ACTIVE)

    def latest_job(
        self, store: Store, owner: str, experiment: Experiment, kinds: Sequence[str]
    ) -> Job | None:
        """The newest job of one of `kinds` in the owner's experiment (a tab re-attaches to it)."""
        for job in list_jobs(store, owner, experiment.id):
            if job.kind in kinds:
                return job
        return None

    def start(
        self, owner: str | None, argv: Sequence[str], plan: Callable[[Store], JobPlan]
    ) -> Job:
        """Plan and start a stage's job for `owner`; return it.

        `argv` is the job's command line as the request describes it (`request.argv()`): what
        the host allows (`rtdemo.hosting.access`) is checked on it before anything touches the
        disk or the network, then the owner's running-jobs quota, then `plan(store)` validates
        the request (a `UserError` before any job exists). Secrets travel in the plan's `env`
        to the job's environment only, never in its command line, the store or a file.
        """
        owner = check_owner(owner)
        check_command(argv)  # the server's own network and disk, if the host forbids them
        with self.store() as store:
            self.quotas.check_running(owner, len(self.active_jobs(store, owner)))
            return start_plan(store, plan(store), owner)


def cancel_current(store: Store, owner: str, jobs: Sequence[Job], nothing: str) -> list[Job]:
    """Cancel the running one of a tab's `jobs` (else the newest queued one); return the queued
    or running ones, the cancelled first. `nothing`: the message when there is none."""
    active = [j for j in jobs if j.status in ACTIVE]
    if not active:
        raise UserError(nothing)
    job = next((j for j in active if j.status == "running"), active[0])
    cancel_job(store, job.id, owner)
    return [job, *(j for j in active if j is not job)]


def keep_upload(ctx: AppContext, owner: str, path: str | Path) -> Path:
    """Copy an uploaded file (Gradio's temporary copy) into the owner's folder; return the copy."""
    source = Path(path)
    if not source.is_file():
        raise UserError(f"the uploaded file {source.name} is gone: upload it again")
    folder = ctx.workspace / "uploads" / owner
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{secrets.token_hex(4)}-{source.name}"
    shutil.copyfile(source, target)
    return target


def cli_text(argv: Sequence[str]) -> str:
    """The equivalent command line a user can paste (arguments quoted where needed)."""
    import shlex

    return "rtdemo " + " ".join(shlex.quote(str(a)) for a in argv)


def shown_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with a `UserError` turned into a "⚠️ message" line for the tab's message box."""

    @wraps(fn)  # API clients see `fn`'s parameter names
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except UserError as err:
            return f"⚠️ {err}"

    return wrapped
