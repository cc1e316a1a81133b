"""What every tab shares: who the owner is, where the data lives, and how work becomes a job.

Owners: on Spaces the logged-in Hugging Face user (`hf:<username>`); otherwise a random id
(`anon-` and 16 hex digits) kept in the browser (`gr.BrowserState`), so a reload keeps it and two
browsers are two owners. The browser keeps the id *signed* (`anon-<hex>.<hmac>`, `sign_owner`)
with a key that never leaves the server (`owner_key`: `$RTDEMO_OWNER_KEY`, else a random key made
once in the workspace); an id that comes back is only trusted with a valid signature, else the
browser gets a new id. So a visitor can neither claim `hf:someone` nor mint or swap in another
visitor's id, even one they have seen. The page shows only a short fingerprint of the id
(`owner_fingerprint`).

Jobs: a tab builds its stage's typed request and starts it with `AppContext.start`, through the
same `*_plan` function the CLI's `--background` calls (`rtdemo.jobs.plan`): its checks run first,
so bad settings fail in the tab before any job exists.

Messages: a handler's `UserError` is shown in its tab as a "⚠️ message" line (`shown_errors`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

from gradio.utils import get_upload_folder

from rtdemo.errors import UserError
from rtdemo.hosting.access import check_command, check_model_sizes
from rtdemo.hosting.credentials import user_token
from rtdemo.hosting.disk import owner_bytes, tree_bytes, upload_folder
from rtdemo.hosting.fairness import check_client_jobs, current_client, fair_key
from rtdemo.hosting.quotas import LOGGED_IN_PREFIX, Quotas
from rtdemo.jobs.plan import JobPlan, start_plan
from rtdemo.jobs.records import Job
from rtdemo.jobs.runner import active_jobs_of, cancel_job, list_jobs
from rtdemo.workspace.store import Experiment, Store, workspace_path

_SIGNED = re.compile(r"(anon-[0-9a-f]{16})\.([0-9a-f]{32})")
ACTIVE = ("queued", "running")
OWNER_KEY_ENV = "RTDEMO_OWNER_KEY"
OWNER_KEY_FILE = ".owner-key"


def new_owner() -> str:
    """A fresh anonymous owner id."""
    return f"anon-{secrets.token_hex(8)}"


def owner_key(workspace: Path) -> str:
    """The server's key that signs the owner ids kept in browsers; stable across restarts.

    From `$RTDEMO_OWNER_KEY`, else a random key made once in the workspace (`.owner-key`, readable
    by the app's user only). It is never sent to a client. A new key would make every visitor a
    new owner (their experiments stay in the store, out of reach).
    """
    if value := os.environ.get(OWNER_KEY_ENV, "").strip():
        return value
    path = Path(workspace) / OWNER_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    value = path.read_text().strip()
    if not value:
        raise UserError(f"{path} is empty: delete it (a new key is made) or set {OWNER_KEY_ENV}")
    return value


def _signature(owner: str, key: str) -> str:
    mac = hmac.new(key.encode(), b"rtdemo-owner:" + owner.encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def sign_owner(owner: str, key: str) -> str:
    """What the browser keeps for anonymous `owner`: the id and its signature by `key`."""
    return f"{owner}.{_signature(owner, key)}"


def owner_fingerprint(owner: str) -> str:
    """A short, stable fingerprint of `owner` for the page (the id itself is a credential)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:8]


def resolve_owner(stored: Any, username: str | None = None, *, key: str) -> str:
    """The owner of this browser: the logged-in user, else the id it kept (if signed by `key`),
    else a new id."""
    if username:
        return f"{LOGGED_IN_PREFIX}{username}"
    if isinstance(stored, str) and (match := _SIGNED.fullmatch(stored)):
        owner, signature = match.groups()
        if hmac.compare_digest(signature, _signature(owner, key)):
            return owner
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
        self,
        owner: str | None,
        argv: Sequence[str],
        plan: Callable[[Store], JobPlan],
        hub_token: str | None = None,
    ) -> Job:
        """Plan and start a stage's job for `owner`; return it.

        `argv` is the job's command line as the request describes it (`request.argv()`): what
        the host allows (`rtdemo.hosting.access`) is checked on it before anything touches the
        disk or the network, then the owner's running-jobs quota and the disk caps
        (`check_disk`), then, on a shared app, the size of the Hub model it names as its student
        or local teacher (`check_model_sizes`, one listing request made with `hub_token`, the
        signed-in user's own token, the one `for_user(plan, hub_token)` gives the plan; none
        when not signed in), then `plan(store)` validates the request (a `UserError` before any
        job exists). Secrets travel in the plan's `env` to the job's environment only, never in
        its command line, the store or a file.

        The job counts for the client of the request being served (`rtdemo.hosting.fairness`:
        the handlers that start jobs run inside `serving(request)`) when the owner is an
        anonymous visitor: its turns in the torch queue and the per-client job cap are that
        client's, however many owner ids it has.
        """
        owner = check_owner(owner)
        check_command(argv)  # the server's own network and disk, if the host forbids them
        key = fair_key(owner, current_client())
        with self.store() as store:
            self.quotas.check_running(owner, len(self.active_jobs(store, owner)))
            if key != owner:
                check_client_jobs(active_jobs_of(store, key))
            self.check_disk(store, owner)
            check_model_sizes(argv, user_token(hub_token))  # before the plan reads its config
            return start_plan(store, plan(store), owner, fair_key=key)

    def check_disk(self, store: Store, owner: str, upload: int | None = None) -> None:
        """Refuse a job (or an upload of `upload` bytes) when the owner's files or the whole
        workspace are at their disk cap (`Quotas.check_disk`; measured only when capped)."""
        if not (self.quotas.max_owner_disk_mb or self.quotas.max_disk_mb):
            return
        used = owner_bytes(store, owner) if self.quotas.max_owner_disk_mb else 0
        total = tree_bytes(self.workspace) if self.quotas.max_disk_mb else 0
        self.quotas.check_disk(used, total, upload)


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
    """Copy an uploaded file (Gradio's temporary copy) into the owner's folder; return the copy.

    Its size (`Quotas.check_upload`) and the disk caps are checked before anything is copied.
    A file refused for its size is deleted from Gradio's upload folder too; one refused for the
    disk caps stays there (Gradio keeps identical uploads of several visitors in one file) until
    Gradio's cache cleaning removes it (`RTDEMO_UPLOAD_TTL_S`). A copy that fails
    halfway is removed. Use `kept_upload` to have the copy removed when the work it is for fails.
    """
    source = Path(path)
    if not source.is_file():
        raise UserError(f"the uploaded file {source.name} is gone: upload it again")
    size = source.stat().st_size
    try:
        ctx.quotas.check_upload(source.name, size)
    except UserError:
        _discard_gradio_upload(source)
        raise
    with ctx.store() as store:
        ctx.check_disk(store, owner, upload=size)
    folder = upload_folder(ctx.workspace, owner)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{secrets.token_hex(4)}-{source.name}"
    try:
        shutil.copyfile(source, target)
    except OSError as err:
        target.unlink(missing_ok=True)
        raise UserError(
            f"cannot keep the uploaded file {source.name}: {err.strerror or err}"
        ) from None
    return target


@contextlib.contextmanager
def kept_upload(ctx: AppContext, owner: str, path: str | Path | None) -> Iterator[Path | None]:
    """`keep_upload(ctx, owner, path)` for the block of work that uses it (None without an
    upload); if the block raises, the kept copy is deleted again: a refused file stays nowhere."""
    if not path:
        yield None
        return
    copy = keep_upload(ctx, owner, path)
    try:
        yield copy
    except BaseException:
        copy.unlink(missing_ok=True)
        raise


def _discard_gradio_upload(path: Path) -> None:
    """Delete `path` (and its folder, once empty) if it is in Gradio's upload folder."""
    folder = Path(get_upload_folder()).resolve()
    path = path.resolve()
    if not path.is_relative_to(folder) or path == folder:
        return
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # another upload may share the folder: then it stays
        if path.parent != folder:
            path.parent.rmdir()


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
