"""Per-owner quotas for a shared app, set by whoever hosts it through environment variables.

    RTDEMO_MAX_RUNNING_JOBS      jobs one owner may have queued or running at once (default 2,
                                 so that "train both formats" fits; 0 = no limit)
    RTDEMO_VISITOR_MAX_SAMPLES   questions × D one generation may ask for (visitors only)
    RTDEMO_VISITOR_MAX_STEPS     optimizer steps one training run may take (visitors only)
    RTDEMO_VISITOR_MAX_QUESTIONS questions an experiment may snapshot per split (visitors only)

A *visitor* is an owner who is not logged in with Hugging Face (`owner_is_visitor`). On Spaces the
visitor caps default to 2,000 samples, 3,000 steps and 5,000 questions; elsewhere (one person on
their own machine) they default to no limit. `0` always means no limit.

Disk, for every owner (logged in or not); MB are 2^20 bytes:

    RTDEMO_MAX_UPLOAD_MB         size of one uploaded file (default 200, the most a task file may
                                 be anyway: `rtdemo.tasks.userfile.MAX_FILE_BYTES`). Gradio stops a
                                 larger upload while it arrives (`max_file_size`, nothing is kept)
                                 and the app checks again before keeping a copy
    RTDEMO_MAX_OWNER_DISK_MB     disk one owner's files may use (`rtdemo.hosting.disk`: uploads,
                                 job folders, student runs, results, publishing folders); on
                                 Spaces 2,000 by default, elsewhere no limit
    RTDEMO_MAX_DISK_MB           disk the whole workspace may use (the store included); on Spaces
                                 20,000 by default, elsewhere no limit

    RTDEMO_UPLOAD_TTL_S          seconds Gradio keeps its temporary copy of an upload (and of a
                                 file offered for download) before deleting it (default 3,600;
                                 checked every tenth of that; 0 = never, Gradio's default). The
                                 app keeps its own copy of a file it uses (`uploads/<owner hash>/`)

The disk caps are checked before a job starts and before an upload is kept (`check_disk`): an
owner at their cap, or a workspace at its cap, starts nothing new until files are removed.

Models, for every owner (what the server downloads and loads for them):

    RTDEMO_MAX_MODEL_MB          weights of one Hub model a user names (a student, a local teacher,
                                 a chat student); on Spaces 2,000 by default, elsewhere no limit.
                                 Checked on a shared app only, before anything is downloaded
                                 (`rtdemo.hosting.access.check_model_size`)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rtdemo.envvars import env_number
from rtdemo.errors import UserError

LOGGED_IN_PREFIX = "hf:"  # owners logged in with Hugging Face: "hf:<username>"
SPACES_DEFAULTS = {
    "samples": 2000,
    "steps": 3000,
    "questions": 5000,
    "owner_disk_mb": 2000,
    "disk_mb": 20000,
    "model_mb": 2000,
}
MB = 2**20
DEFAULT_MAX_UPLOAD_MB = 200  # = rtdemo.tasks.userfile.MAX_FILE_BYTES (tests check they agree)
DEFAULT_UPLOAD_TTL_S = 3600
MAX_MODEL_ENV = "RTDEMO_MAX_MODEL_MB"


def on_spaces(env: Mapping[str, str] | None = None) -> bool:
    """Whether the app runs on Hugging Face Spaces (Spaces sets SYSTEM=spaces)."""
    return (os.environ if env is None else env).get("SYSTEM") == "spaces"


LOCAL_ACCESS_ENV = "RTDEMO_ALLOW_LOCAL_ACCESS"


def local_access_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether users may reach the server's own network and disk (`rtdemo.hosting.access`)."""
    env = os.environ if env is None else env
    raw = env.get(LOCAL_ACCESS_ENV, "").strip().lower()
    if not raw:
        return not on_spaces(env)
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise UserError(f"{LOCAL_ACCESS_ENV}={raw!r}: use 1 (allowed) or 0 (refused)")


def owner_is_visitor(owner: str) -> bool:
    """Whether `owner` is an anonymous visitor rather than a logged-in Hugging Face user."""
    return not owner.startswith(LOGGED_IN_PREFIX)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(env_number(env, name, default, integer=True))


@dataclass(frozen=True)
class Quotas:
    """Limits per owner; 0 means no limit."""

    max_running_jobs: int = 2
    visitor_max_samples: int = 0
    visitor_max_steps: int = 0
    visitor_max_questions: int = 0
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    max_owner_disk_mb: int = 0
    max_disk_mb: int = 0
    upload_ttl_s: int = DEFAULT_UPLOAD_TTL_S
    max_model_mb: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Quotas:
        """The host's quotas from the environment (module docstring), with Spaces defaults."""
        env = os.environ if env is None else env
        spaces = on_spaces(env)
        pick = lambda key: SPACES_DEFAULTS[key] if spaces else 0  # noqa: E731
        return cls(
            max_running_jobs=_int(env, "RTDEMO_MAX_RUNNING_JOBS", 2),
            visitor_max_samples=_int(env, "RTDEMO_VISITOR_MAX_SAMPLES", pick("samples")),
            visitor_max_steps=_int(env, "RTDEMO_VISITOR_MAX_STEPS", pick("steps")),
            visitor_max_questions=_int(env, "RTDEMO_VISITOR_MAX_QUESTIONS", pick("questions")),
            max_upload_mb=_int(env, "RTDEMO_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB),
            max_owner_disk_mb=_int(env, "RTDEMO_MAX_OWNER_DISK_MB", pick("owner_disk_mb")),
            max_disk_mb=_int(env, "RTDEMO_MAX_DISK_MB", pick("disk_mb")),
            upload_ttl_s=_int(env, "RTDEMO_UPLOAD_TTL_S", DEFAULT_UPLOAD_TTL_S),
            max_model_mb=_int(env, MAX_MODEL_ENV, pick("model_mb")),
        )

    @property
    def max_upload_bytes(self) -> int | None:
        """The most bytes one upload may have (None: no limit): Gradio's `max_file_size`."""
        return self.max_upload_mb * MB or None

    def check_upload(self, name: str, size: int) -> None:
        """Refuse an uploaded file of `size` bytes above the upload limit."""
        if self.max_upload_mb and size > self.max_upload_mb * MB:
            raise UserError(
                f"{name} is {size_text(size)}; the limit is {self.max_upload_mb:,} MB per "
                "upload. Keep a sample of the rows or split the file."
            )

    def check_disk(self, owner_bytes: int, workspace_bytes: int, upload: int | None = None) -> None:
        """Refuse new work when an owner's files (`owner_bytes`) or the whole workspace
        (`workspace_bytes`) are at their cap: a job when they are, an upload of `upload` bytes
        when it would pass it."""
        adding = upload or 0
        cap = self.max_owner_disk_mb * MB
        if cap and (owner_bytes + adding > cap or owner_bytes >= cap):
            used = f"your files on this app use {size_text(owner_bytes)} of your {size_text(cap)}"
            if upload is None:
                what = f"{used}: no new job can start"
            else:
                what = f"this upload ({size_text(adding)}) does not fit: {used}"
            raise UserError(
                f"{what}. The app keeps that much per user (a finished training run keeps no "
                "checkpoints); run the app on your own machine for more (its host can raise "
                "RTDEMO_MAX_OWNER_DISK_MB)"
            )
        cap = self.max_disk_mb * MB
        if cap and (workspace_bytes + adding > cap or workspace_bytes >= cap):
            raise UserError(
                f"this app's disk is full: everyone's files use {size_text(workspace_bytes)} of "
                f"its {size_text(cap)}, so no new job or upload can start. Try again later, or "
                "run the app on your own machine (its host can raise RTDEMO_MAX_DISK_MB)"
            )

    def check_running(self, owner: str, running: int) -> None:
        """Refuse a new job when `owner` already has `running` queued or running jobs."""
        if self.max_running_jobs and running >= self.max_running_jobs:
            raise UserError(
                f"you already have {running} job(s) queued or running (this app allows "
                f"{self.max_running_jobs} at a time): wait for it to finish or cancel it"
            )

    def _visitor_cap(self, owner: str, value: int, cap: int, what: str, advice: str) -> None:
        if cap and owner_is_visitor(owner) and value > cap:
            raise UserError(
                f"{what} is {value:,}, above this app's limit of {cap:,} for visitors who are "
                f"not logged in: {advice}, log in with Hugging Face, or run the app on your "
                "own machine"
            )

    def check_samples(self, owner: str, questions: int, samples: int) -> None:
        """Refuse a generation of `questions` × `samples` above the visitor cap."""
        self._visitor_cap(
            owner,
            questions * samples,
            self.visitor_max_samples,
            f"questions × samples ({questions:,} × {samples})",
            "use fewer questions or samples",
        )

    def check_steps(self, owner: str, steps: int) -> None:
        """Refuse a training run of `steps` optimizer steps above the visitor cap."""
        self._visitor_cap(
            owner, steps, self.visitor_max_steps, "the number of training steps", "use fewer steps"
        )

    def check_questions(
        self, owner: str, questions: int, advice: str = "pick a smaller size or a limit"
    ) -> None:
        """Refuse an experiment snapshot of `questions` per split above the visitor cap."""
        self._visitor_cap(
            owner, questions, self.visitor_max_questions, "the number of questions", advice
        )


def size_text(size: int) -> str:
    """Bytes as a short text: "312 KB", "48.2 MB", "1.5 GB" (units of 2^10)."""
    for unit, scale in (("GB", 2**30), ("MB", MB), ("KB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{size} bytes"
