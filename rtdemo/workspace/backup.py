"""An optional backup of the workspace to a private Hub dataset repo, restored at start.

A Space's disk is wiped when it restarts (a rebuild, a crash, new hardware). With a backup repo
configured, nothing is lost: the app (`app.py`) restores an empty workspace from the repo before it
builds, then pushes the workspace to the repo every few minutes in a background thread
(`BackupScheduler`, a `huggingface_hub.CommitScheduler`). The host can do both by hand:

    rtdemo backup now                  # push the workspace now (HF_TOKEN or `hf auth login`)
    rtdemo backup restore              # into an empty workspace; --revision COMMIT for an older one

Settings (environment, read at start by `BackupSettings.from_env`):

    RTDEMO_BACKUP_REPO=<owner>/<name>  the dataset repo; unset: no backup (the default)
    RTDEMO_BACKUP_EVERY=<minutes>      between pushes, at least 1 (default 5)
    RTDEMO_BACKUP_CHECKPOINTS=1        include training checkpoints (default 0: left out)
    RTDEMO_BACKUP_MAX_MODEL_MB=<MB>    a model folder larger than this is left out (default 2048)

The token is the Space owner's (`rtdemo.hosting.credentials.space_owner_token`: the `HF_TOKEN`
secret captured at start, before it leaves the app's environment), with write access to the repo.
It is passed explicitly to every Hub call, never written to disk, logs, job environments or the
repo, and never serves a visitor.

The repo: created private if it does not exist, and refused if it is public (it holds every
visitor's data). Its files mirror the workspace (same relative paths) plus `.rtdemo-backup.json`
(what was pushed from where, what was left out): each push commits what changed since the last
one and deletes what the workspace no longer holds, so older states stay in the repo's history
(`rtdemo backup restore --revision COMMIT`). A push that finds nothing changed commits nothing.

What is backed up:

- the store (`rtdemo.sqlite3`: experiments, questions, samples, reviews, jobs, student runs,
  evaluations, chat votes), as a consistent snapshot taken with SQLite's backup API: the live
  database file (and its -wal/-shm) is never uploaded;
- every other file of the workspace: uploads/, the job folders runs/N-kind/ (logs, progress),
  the student runs' trained models (final/, and the tiny student's base/) with their results and
  evaluations, experiments/ (results), publish/ (push records), prices.yaml;
- `.owner-key`, the key that signs visitors' ids (when `RTDEMO_OWNER_KEY` is not set): without it
  every visitor would get a new id after a restore and lose sight of their experiments. The
  repo is private, and its files are the data that key protects anyway.

What is not: training checkpoints (checkpoint-N/: optimizer state, only used to resume an
unfinished run; `RTDEMO_BACKUP_CHECKPOINTS=1` includes them, else a run that was interrupted by a
restart resumes from its first step), any model folder (a folder holding weights) over
`RTDEMO_BACKUP_MAX_MODEL_MB`, left out whole, never in part (logged, and listed in the manifest),
and this module's own temporary folders. Files are copied to a temporary folder before they are
uploaded, so a file being written is uploaded as it was at one moment (or again at the next push).

Restore (`restore`): only into a workspace without a store (`rtdemo.sqlite3`); otherwise it does
nothing (`restore_if_empty`) or refuses (`rtdemo backup restore`). It downloads the repo, checks the
store (integrity, a schema this rtdemo knows), and puts the files in place, the store last: a
restore that is interrupted leaves no store, so the next start restores again. Jobs that were
queued or running when the backup was taken cannot be running now (their processes were on the
old machine): they are marked failed (cancelled, if a cancel had been asked for) with a message
saying to resume them, and their stale process ids are cleared. Restored into another folder than
the one backed up, the jobs' `--workspace` is rewritten to the new folder; other absolute paths
the store records (a tiny LoRA student's base, evaluation files) still name the old one (logged).

At start (`start_backup`, called by app.py): a problem (no token, a token the Hub refuses, a repo
of someone else, no network) is logged and the app starts anyway. If the restore failed, this run
makes no backup at all: pushing the empty workspace would overwrite the good backup.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import CommitScheduler

from rtdemo import __version__
from rtdemo.envvars import env_number
from rtdemo.errors import UserError
from rtdemo.publishing.errors import hub_error
from rtdemo.workspace.store import DB_NAME, SCHEMA_VERSION, workspace_path

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, HfApi

logger = logging.getLogger(__name__)

REPO_ENV = "RTDEMO_BACKUP_REPO"
EVERY_ENV = "RTDEMO_BACKUP_EVERY"
CHECKPOINTS_ENV = "RTDEMO_BACKUP_CHECKPOINTS"
MAX_MODEL_ENV = "RTDEMO_BACKUP_MAX_MODEL_MB"
DEFAULT_EVERY = 5.0  # minutes
MIN_EVERY = 1.0
DEFAULT_MAX_MODEL_MB = 2048.0
DEFAULT_ENDPOINT = "https://huggingface.co"

MANIFEST = ".rtdemo-backup.json"
FORMAT = 1  # the manifest's format: a restore refuses a newer one
RESTORE_DIR = ".rtdemo-restore"  # where a restore downloads to, inside the workspace
OWNER_KEY_FILE = ".owner-key"  # rtdemo.ui.session's key that signs visitors' ids
KEEP_IN_REPO = frozenset({".gitattributes", "README.md"})  # the repo's own files: never deleted
DB_FILES = frozenset({DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"})
WEIGHTS = re.compile(r".*\.(safetensors|bin|pt|pth|ckpt|gguf|h5|msgpack)$")
CHECKPOINT = re.compile(r"checkpoint-\d+")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")

RUNNING_ERROR = (
    "the app restarted while this job ran (the workspace was restored from its backup): resume it"
)
QUEUED_ERROR = (
    "the app restarted before this job started (the workspace was restored from its backup): "
    "resume it"
)


# Settings -----------------------------------------------------------------------------------


_MEANINGS = {EVERY_ENV: "minutes between pushes", MAX_MODEL_ENV: "MB, the largest model folder"}


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    return env_number(env, name, default, minimum=minimum, meaning=_MEANINGS[name])


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise UserError(f"{name}={raw!r}: give 1 (on) or 0 (off)")


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is an `<owner>/<name>` repo id, else a `UserError`."""
    repo_id = (repo_id or "").strip()
    if not _REPO_ID.fullmatch(repo_id):
        raise UserError(
            f"{REPO_ENV}={repo_id!r}: give the backup dataset repo as <owner>/<name>, e.g. "
            "you/rtdemo-backup (it is created private if it does not exist)"
        )
    return repo_id


@dataclass(frozen=True)
class BackupSettings:
    """Where and how the workspace is backed up (module docstring)."""

    repo_id: str
    every: float = DEFAULT_EVERY  # minutes between pushes
    checkpoints: bool = False
    max_model_bytes: int = int(DEFAULT_MAX_MODEL_MB * 1_000_000)
    endpoint: str | None = None  # None: $HF_ENDPOINT at the time of the call, else huggingface.co

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BackupSettings | None:
        """The settings `env` (default: this process's environment) gives; None without
        `RTDEMO_BACKUP_REPO`; a `UserError` naming the variable for a bad value."""
        env = os.environ if env is None else env
        if not env.get(REPO_ENV, "").strip():
            return None
        return cls(
            repo_id=check_repo_id(env[REPO_ENV]),
            every=_number(env, EVERY_ENV, DEFAULT_EVERY, MIN_EVERY),
            checkpoints=_flag(env, CHECKPOINTS_ENV),
            max_model_bytes=int(_number(env, MAX_MODEL_ENV, DEFAULT_MAX_MODEL_MB, 0) * 1_000_000),
            endpoint=(env.get("HF_ENDPOINT") or "").strip().rstrip("/") or None,
        )

    def hub_endpoint(self) -> str:
        """The Hub's address: `endpoint`, else `$HF_ENDPOINT` read now, else huggingface.co."""
        return (self.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_api(settings: BackupSettings, token: str) -> HfApi:
    """The Hub client of the backup: the settings' endpoint and the host's token, explicitly."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.hub_endpoint(), token=token)


# What is backed up --------------------------------------------------------------------------


@dataclass
class Selection:
    """The files a push sends (relative path in the repo → file) and what it leaves out."""

    files: dict[str, Path] = field(default_factory=dict)
    left_out: list[dict[str, Any]] = field(default_factory=list)  # {"path", "bytes", "why"}


def _skipped_name(rel: str) -> bool:
    """Files and folders of the workspace that are never backed up as they are."""
    top = rel.split("/", 1)[0]
    return rel in DB_FILES or top == RESTORE_DIR or top.startswith(".rtdemo-backup-")


def _tree(folder: Path, checkpoints: bool = True) -> Iterator[Path]:
    """Every file under `folder`, without `checkpoint-N` folders unless `checkpoints`
    (symbolic links are neither followed nor backed up)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if checkpoints or not CHECKPOINT.fullmatch(d))
        for name in sorted(files):
            path = Path(root) / name
            if not path.is_symlink() and path.is_file():
                yield path


def _size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def select_files(workspace: Path, settings: BackupSettings) -> Selection:
    """What a push of `workspace` sends, by the policy of the module docstring (the store's
    snapshot is added by the push itself)."""
    workspace = Path(workspace)
    selection = Selection()
    for root, dirs, files in os.walk(workspace):
        here = Path(root)
        rel_dir = here.relative_to(workspace).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        kept_dirs = []
        for name in sorted(dirs):
            rel = rel_dir + name
            if _skipped_name(rel) or (here / name).is_symlink():
                continue
            if CHECKPOINT.fullmatch(name) and not settings.checkpoints:
                size = _size(list(_tree(here / name)))
                selection.left_out.append({"path": rel, "bytes": size, "why": "checkpoint"})
                continue
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        if any(WEIGHTS.fullmatch(name) for name in files) and rel_dir:
            # A model folder (it holds weights): all of it, or none of it.
            paths = list(_tree(here, settings.checkpoints))
            size = _size(paths)
            if size > settings.max_model_bytes:
                why = f"model folder over {MAX_MODEL_ENV}"
                selection.left_out.append({"path": rel_dir.rstrip("/"), "bytes": size, "why": why})
            else:
                for path in paths:
                    selection.files[path.relative_to(workspace).as_posix()] = path
            dirs[:] = []
            continue
        for name in sorted(files):
            rel = rel_dir + name
            path = here / name
            if _skipped_name(rel) or path.is_symlink() or not path.is_file():
                continue
            selection.files[rel] = path
    return selection


def snapshot_store(workspace: Path, target: Path) -> Path | None:
    """A consistent copy of the workspace's store at `target` (SQLite's backup API, so writers
    may keep writing), as one self-contained file; None if the workspace has no store."""
    source_path = Path(workspace) / DB_NAME
    if not source_path.exists():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(str(source_path), timeout=30)
    try:
        copy = sqlite3.connect(str(target))
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # no -wal file needed beside it
        finally:
            copy.close()
    finally:
        source.close()
    return target


# Pushing ------------------------------------------------------------------------------------


def _digest(path: Path, kind: str) -> str:
    """The file's sha256, or its git blob id (`kind` "git"), as the Hub reports them."""
    hasher = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind != "sha256":
        hasher.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


@dataclass(frozen=True)
class _Remote:
    size: int
    sha256: str | None  # large files
    blob_id: str | None  # regular files

    def matches(self, path: Path) -> bool:
        try:
            if path.stat().st_size != self.size:
                return False
            if self.sha256:
                return _digest(path, "sha256") == self.sha256
            return self.blob_id is not None and _digest(path, "git") == self.blob_id
        except FileNotFoundError:
            return False


@dataclass(frozen=True)
class PushResult:
    """What one push did."""

    commit: str | None  # the commit's id; None when nothing had changed
    uploaded: list[str]
    deleted: list[str]
    left_out: list[dict[str, Any]]


class WorkspaceBackup:
    """Pushes one workspace to its backup repo: `push()` commits what changed since the last
    push (the first one prepares the repo, `prepare_repo`, and compares with what it holds).
    Thread-safe: one push at a time."""

    def __init__(self, workspace: Path, settings: BackupSettings, api: HfApi) -> None:
        self.workspace = Path(workspace)
        self.settings = settings
        self.api = api
        self._lock = threading.Lock()
        self._remote: dict[str, _Remote] | None = None  # the repo's files, listed once
        self._sent: dict[str, tuple[int, int]] = {}  # path → (mtime_ns, size) as pushed
        self._db_sent: str | None = None  # sha256 of the store snapshot pushed last
        self._left_out: list[dict[str, Any]] | None = None

    def _doing(self) -> str:
        return f"backing up the workspace to the dataset repo {self.settings.repo_id}"

    def _error(self, err: Exception, doing: str | None = None) -> UserError:
        """`err` as one line that says what to do (`rtdemo.publishing.errors`); a refused
        token is the host's own, so the advice is about the host's `HF_TOKEN`."""
        endpoint, doing = self.settings.hub_endpoint(), doing or self._doing()
        response = getattr(err, "response", None)
        if getattr(response, "status_code", None) == 401:
            return UserError(
                f"{doing}: {endpoint} refused the token (401 Unauthorized): it is wrong or "
                f"expired. Make a token with write access at {endpoint}/settings/tokens and set "
                "it as HF_TOKEN (on Spaces: a secret of the Space)"
            )
        token = self.api.token if isinstance(self.api.token, str) else None
        return hub_error(err, endpoint, doing, token)

    def prepare_repo(self) -> None:
        """Create the repo (private) if it does not exist; refuse a public one. `UserError`s."""
        repo = self.settings.repo_id
        try:
            self.api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
            info = self.api.repo_info(repo, repo_type="dataset")
        except Exception as err:  # HTTP errors, transport errors, offline mode: one message
            raise self._error(err) from None
        if not info.private:
            raise UserError(
                f"the backup repo {repo} is public: make it private in its settings on the Hub "
                "(it holds every visitor's data and the key that signs their ids), or name "
                f"another one in {REPO_ENV}"
            )

    def _list_remote(self) -> dict[str, _Remote]:
        from huggingface_hub import RepoFile

        entries = self.api.list_repo_tree(
            self.settings.repo_id, repo_type="dataset", recursive=True
        )
        remote = {}
        for entry in entries:
            if isinstance(entry, RepoFile):
                sha = entry.lfs.sha256 if entry.lfs is not None else None
                remote[entry.path] = _Remote(entry.size, sha, entry.blob_id)
        return remote

    def push(self) -> PushResult:
        """Push what changed; `UserError` if the Hub refuses or cannot be reached."""
        with self._lock:
            staging = Path(tempfile.mkdtemp(prefix="rtdemo-backup-"))
            try:
                return self._push(staging)
            except UserError:
                raise
            except Exception as err:
                raise self._error(err) from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _push(self, staging: Path) -> PushResult:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        if self._remote is None:  # the first push: the repo as it is
            self.prepare_repo()
            self._remote = self._list_remote()
        remote = self._remote
        snapshot = snapshot_store(self.workspace, staging / "store" / DB_NAME)
        if snapshot is None and DB_NAME in remote:
            raise UserError(
                f"the workspace {self.workspace} has no store but the backup in "
                f"{self.settings.repo_id} has one: restore it first (rtdemo backup restore), "
                "or move the workspace away; nothing was pushed, the backup is untouched"
            )
        selection = select_files(self.workspace, self.settings)
        adds: list[tuple[str, Path]] = []
        sent: dict[str, tuple[int, int]] = {}
        for rel, path in selection.files.items():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            key = (stat.st_mtime_ns, stat.st_size)
            if self._sent.get(rel) == key:
                continue
            if rel not in self._sent and rel in remote and remote[rel].matches(path):
                self._sent[rel] = key  # the repo holds it already (an earlier run pushed it)
                continue
            copy = staging / "files" / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(path, copy)
            except FileNotFoundError:
                continue  # deleted while we looked
            adds.append((rel, copy))
            sent[rel] = key
        db_digest = None
        if snapshot is not None:
            db_digest = _digest(snapshot, "sha256")
            unchanged = self._db_sent == db_digest or (
                self._db_sent is None and DB_NAME in remote and remote[DB_NAME].matches(snapshot)
            )
            if unchanged:
                self._db_sent = db_digest
            else:
                adds.append((DB_NAME, snapshot))
        keep = set(selection.files) | KEEP_IN_REPO | {MANIFEST, DB_NAME}
        deletes = sorted(path for path in remote if path not in keep)
        self._log_left_out(selection.left_out)
        if not adds and not deletes:
            return PushResult(None, [], [], selection.left_out)
        manifest = staging / MANIFEST
        manifest.write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "rtdemo": __version__,
                    "schema": SCHEMA_VERSION,
                    "workspace": str(self.workspace.resolve()),
                    "pushed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "files": len(selection.files) + bool(snapshot),
                    "left_out": selection.left_out,
                },
                indent=2,
            )
            + "\n"
        )
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in adds
        ]
        operations.append(CommitOperationAdd(path_in_repo=MANIFEST, path_or_fileobj=str(manifest)))
        operations += [CommitOperationDelete(path_in_repo=rel) for rel in deletes]
        message = f"rtdemo backup: {len(adds)} files updated, {len(deletes)} removed"
        info: CommitInfo = self.api.create_commit(
            self.settings.repo_id, operations, commit_message=message, repo_type="dataset"
        )
        # Only now that the commit is in: remember what the repo holds.
        self._sent.update(sent)
        if db_digest is not None:
            self._db_sent = db_digest
        for rel in deletes:
            remote.pop(rel, None)
            self._sent.pop(rel, None)
        for rel, path in adds:
            remote[rel] = _Remote(path.stat().st_size, None, None)  # known by `_sent` from now
        remote[MANIFEST] = _Remote(manifest.stat().st_size, None, None)
        uploaded = [rel for rel, _ in adds]
        logger.info(
            "backed up %d files to %s (%d removed)",
            len(uploaded),
            self.settings.repo_id,
            len(deletes),
        )
        return PushResult(info.oid, uploaded, deletes, selection.left_out)

    def _log_left_out(self, left_out: list[dict[str, Any]]) -> None:
        models = [item for item in left_out if item["why"] != "checkpoint"]
        if models != self._left_out and models:
            listed = ", ".join(f"{item['path']} ({item['bytes'] / 1e6:.0f} MB)" for item in models)
            logger.warning(
                "not backed up (over %s=%.0f): %s",
                MAX_MODEL_ENV,
                self.settings.max_model_bytes / 1e6,
                listed,
            )
        self._left_out = models


class BackupScheduler(CommitScheduler):
    """`huggingface_hub.CommitScheduler` pushing a `WorkspaceBackup` every `settings.every`
    minutes in a daemon thread (the first push at once), and once more when the process exits
    normally. `trigger()` pushes now (a `Future`); `stop()` ends it (no push at exit either).

    Creating it prepares the repo (`WorkspaceBackup.prepare_repo`): a `UserError` if that fails.
    A failed scheduled push is logged (`last_error`) and tried again at the next one."""

    def __init__(
        self, workspace: Path, settings: BackupSettings, token: str, *, api: HfApi | None = None
    ) -> None:
        api = api or hub_api(settings, token)
        self.backup = WorkspaceBackup(workspace, settings, api)
        self.backup.prepare_repo()
        self.last_error: str | None = None
        self.last_result: PushResult | None = None
        super().__init__(
            repo_id=settings.repo_id,
            folder_path=workspace,
            every=settings.every,
            repo_type="dataset",
            private=True,
            token=token,
            hf_api=api,
        )

    def push_to_hub(self) -> CommitInfo | None:  # type: ignore[override]
        """One scheduled push (the base class's thread and `trigger()` call it)."""
        try:
            result = self.backup.push()
        except UserError as err:
            self.last_error = str(err)
            logger.error("%s (the next try is in %g minutes)", err, self.every)
            return None
        self.last_error, self.last_result = None, result
        return None

    def stop(self) -> None:
        """Stop pushing, now and at exit."""
        super().stop()
        atexit.unregister(self._push_to_hub)


# Restoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    """What a restore put in place."""

    commit: str
    files: int
    jobs_stopped: list[int]  # the jobs it marked failed or cancelled
    moved_from: str | None  # the folder the backup was taken from, if another one


def has_store(workspace: Path) -> bool:
    """Whether the workspace holds a store (then it is not restored into)."""
    return (Path(workspace) / DB_NAME).exists()


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (name,)).fetchone() is not None


def _stop_jobs(conn: sqlite3.Connection) -> list[int]:
    """Mark the queued and running jobs of a restored store stopped (module docstring)."""
    if not _has_table(conn, "jobs"):
        return []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    active = "status IN ('queued', 'running')"
    ids = [row[0] for row in conn.execute(f"SELECT id FROM jobs WHERE {active} ORDER BY id")]
    stopped = "pid = NULL, ended_at = ?"
    conn.execute(
        f"UPDATE jobs SET status = 'cancelled', {stopped} WHERE {active} AND cancel_requested = 1",
        (now,),
    )
    for status, error in (("running", RUNNING_ERROR), ("queued", QUEUED_ERROR)):
        conn.execute(
            f"UPDATE jobs SET status = 'failed', error = ?, {stopped} WHERE status = ?",
            (error, now, status),
        )
    return ids


def _move_jobs(conn: sqlite3.Connection, old: str, new: str) -> int:
    """Point the jobs' `--workspace` at `new` where it names `old`; how many jobs changed."""
    changed = 0
    for job_id, argv_json in conn.execute("SELECT id, argv FROM jobs").fetchall():
        argv = json.loads(argv_json)
        fixed = list(argv)
        for i, arg in enumerate(argv):
            if arg == "--workspace" and i + 1 < len(argv) and argv[i + 1] == old:
                fixed[i + 1] = new
            elif arg == f"--workspace={old}":
                fixed[i] = f"--workspace={new}"
        if fixed != argv:
            conn.execute("UPDATE jobs SET argv = ? WHERE id = ?", (json.dumps(fixed), job_id))
            changed += 1
    return changed


def _prepare_store(db: Path, old_workspace: str | None, workspace: Path) -> list[int]:
    """Check the downloaded store and make it fit this machine; the jobs it stopped."""
    conn = sqlite3.connect(str(db), isolation_level=None)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise UserError(f"the store in the backup is damaged ({check}): nothing was restored")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise UserError(
                f"the backup was written by a newer rtdemo (schema v{version}, this one knows "
                f"v{SCHEMA_VERSION}): upgrade rtdemo, then restart; nothing was restored"
            )
        conn.execute("BEGIN IMMEDIATE")
        stopped = _stop_jobs(conn)
        new = str(workspace.resolve())
        if old_workspace and old_workspace != new and _has_table(conn, "jobs"):
            _move_jobs(conn, old_workspace, new)
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as err:
        message = f"the store in the backup cannot be read ({err}): nothing was restored"
        raise UserError(message) from None
    finally:
        conn.close()
    return stopped


def restore(
    workspace: Path, settings: BackupSettings, token: str, *, revision: str | None = None
) -> Restored | None:
    """Put the backup (its newest commit, or `revision`) in place in `workspace`, which must
    have no store (a `UserError` otherwise). None if the repo does not exist (or this token
    cannot see it) or holds no store: nothing to restore. `UserError` for anything else."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    workspace = Path(workspace)
    if has_store(workspace):
        raise UserError(
            f"the workspace {workspace} already has a store: restore only into an empty "
            "workspace (move this one away first, or pick another with --workspace)"
        )
    api = hub_api(settings, token)
    backup = WorkspaceBackup(workspace, settings, api)
    repo = settings.repo_id
    doing = f"restoring the workspace from the dataset repo {repo}"
    try:
        api.whoami()  # a refused token is said as such, not as "no such repo"
        info = api.repo_info(repo, repo_type="dataset", revision=revision)
    except RepositoryNotFoundError:
        return None
    except RevisionNotFoundError:
        raise UserError(f"{repo} has no revision {revision!r}: nothing was restored") from None
    except Exception as err:
        raise backup._error(err, doing) from None
    names = {sibling.rfilename for sibling in info.siblings or []}
    if DB_NAME not in names:
        return None
    scratch = workspace / RESTORE_DIR
    shutil.rmtree(scratch, ignore_errors=True)  # what an interrupted restore left
    scratch.mkdir(parents=True)
    try:
        try:
            snapshot_download(
                repo,
                repo_type="dataset",
                revision=info.sha,
                local_dir=scratch,
                token=token,
                endpoint=settings.hub_endpoint(),
                ignore_patterns=sorted(KEEP_IN_REPO),
            )
        except Exception as err:
            raise backup._error(err, doing) from None
        manifest: dict[str, Any] = {}
        if (scratch / MANIFEST).is_file():
            manifest = json.loads((scratch / MANIFEST).read_text())
        if int(manifest.get("format", FORMAT)) > FORMAT:
            raise UserError(
                f"the backup in {repo} was written by a newer rtdemo (backup format "
                f"{manifest['format']}): upgrade rtdemo; nothing was restored"
            )
        old = manifest.get("workspace")
        stopped = _prepare_store(scratch / DB_NAME, old, workspace)
        count = 0
        for path in sorted(_tree(scratch)):
            rel = path.relative_to(scratch).as_posix()
            if rel in (DB_NAME, MANIFEST) or rel.split("/", 1)[0] == ".cache":
                continue
            if _skipped_name(rel):
                continue
            target = workspace / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            count += 1
        with contextlib.suppress(FileNotFoundError):
            os.chmod(workspace / OWNER_KEY_FILE, 0o600)  # readable by the app's user only
        os.replace(scratch / DB_NAME, workspace / DB_NAME)  # last: now the workspace has a store
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    moved = old if old and old != str(workspace.resolve()) else None
    if moved:
        logger.warning(
            "the backup was taken from %s and restored into %s: jobs now run here, but other "
            "absolute paths the store records (a tiny LoRA student's base model, evaluation "
            "files) still name %s",
            old,
            workspace.resolve(),
            old,
        )
    return Restored(info.sha or "", count + 1, stopped, moved)


def restore_if_empty(workspace: Path, settings: BackupSettings, token: str) -> Restored | None:
    """`restore` if the workspace has no store yet; None if it has one or there is no backup."""
    if has_store(workspace):
        return None
    return restore(workspace, settings, token)


# The app's start ----------------------------------------------------------------------------


def _visible() -> None:
    """Make this module's messages reach stderr (the Space's log) when nothing else shows them."""
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("rtdemo backup: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def start_backup(
    workspace: str | Path | None = None,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
) -> BackupScheduler | None:
    """What app.py runs before it builds the app: with `RTDEMO_BACKUP_REPO` set, restore an
    empty workspace from the backup, then start pushing it (`BackupScheduler`). `token` is the
    Space owner's. Never raises: a problem is logged and the app starts anyway; returns the
    scheduler, or None when there is no backup this run."""
    if not (os.environ if env is None else env).get(REPO_ENV, "").strip():
        return None  # no backup configured: nothing to say
    _visible()
    try:
        settings = BackupSettings.from_env(env)
    except UserError as err:
        logger.error("%s. The app starts without backup.", err)
        return None
    assert settings is not None
    if not token:
        logger.error(
            "%s is set but the app has no Hub token: add HF_TOKEN (a write token of the "
            "Space's owner) as a secret of the Space. The app starts without backup.",
            REPO_ENV,
        )
        return None
    folder = workspace_path(workspace)
    try:
        restored = restore_if_empty(folder, settings, token)
    except UserError as err:
        logger.error(
            "could not restore the workspace: %s. The app starts with an empty workspace and "
            "makes no backup this run (it would overwrite the backup in %s): fix the problem "
            "and restart the app.",
            err,
            settings.repo_id,
        )
        return None
    if restored is not None:
        logger.warning(
            "restored %d files from %s (commit %s); %d interrupted jobs marked to resume",
            restored.files,
            settings.repo_id,
            restored.commit[:12],
            len(restored.jobs_stopped),
        )
    try:
        scheduler = BackupScheduler(folder, settings, token)
    except UserError as err:
        logger.error("%s. The app starts without backup.", err)
        return None
    logger.warning(
        "backing up %s to the private dataset repo %s every %g minutes",
        folder,
        settings.repo_id,
        settings.every,
    )
    return scheduler
