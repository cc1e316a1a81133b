"""The Publish tab's handlers: the form's command line, preview (dry run), publish, watch, cancel.

Plain functions over the core (no Gradio; the tests call them directly) that raise `UserError` for
what a user can fix; `publish_tab.py` lays out the tab and wires them. Every start goes through
`push_plan`, as `rtdemo push --background` does, so its checks (repo ids, a run without a model,
no kept rationales, no token) fail in the tab before any job exists.

The token: on Spaces, the signed-in user's own (OAuth, scope contribute-repos) or one typed in the
tab — never the Space's `HF_TOKEN`, which belongs to whoever hosts it; on one person's own machine
a typed token, else `HF_TOKEN` / `hf auth login`; on an app shared off Spaces (local access refused,
`rtdemo.hosting.credentials`) a typed token only. It reaches only the job, through its
environment (`secrets_env`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from rtdemo.errors import UserError
from rtdemo.hosting.credentials import users_share_server_token
from rtdemo.jobs.files import last_progress
from rtdemo.jobs.records import Job
from rtdemo.jobs.runner import list_jobs
from rtdemo.publishing.push import DATASET_SUFFIX, PushRequest
from rtdemo.publishing.request import RESULT_NAME, TOKEN_ENV, push_argv, push_plan
from rtdemo.redaction import hide_folder
from rtdemo.training.runs import list_runs
from rtdemo.ui.job_view import job_status
from rtdemo.ui.session import ACTIVE, AppContext, cancel_current, check_owner, cli_text

WHAT = {"student and dataset": "both", "student": "model", "dataset": "dataset"}
VISIBILITY = ("private", "public")
LICENSES = ("unknown", "mit", "apache-2.0", "cc-by-4.0", "cc-by-sa-4.0", "other")


@dataclass(frozen=True)
class PublishForm:
    """The tab's settings (component values in field order)."""

    run: str = ""
    what: str = "student and dataset"
    repo_id: str = ""
    dataset_repo_id: str = ""
    visibility: str = "private"
    merged: bool = False
    all_samples: bool = False
    license: str = "unknown"

    @classmethod
    def of(cls, *values: Any, **named: Any) -> PublishForm:
        """The form from the components' values, by field name or in field order (None for a
        cleared field)."""
        form = cls(*values, **named)
        return cls(
            run=(form.run or "").strip(),
            what=form.what or "student and dataset",
            repo_id=(form.repo_id or "").strip(),
            dataset_repo_id=(form.dataset_repo_id or "").strip(),
            visibility=form.visibility or "private",
            merged=bool(form.merged),
            all_samples=bool(form.all_samples),
            license=(form.license or "unknown").strip(),
        )

    def with_owner(self, username: str | None) -> PublishForm:
        """Repo ids without an owner ("letters-student") get the signed-in user's name."""

        def full(repo_id: str) -> str:
            return (
                f"{username}/{repo_id}" if username and repo_id and "/" not in repo_id else repo_id
            )

        return PublishForm(
            **{
                **self.__dict__,
                "repo_id": full(self.repo_id),
                "dataset_repo_id": full(self.dataset_repo_id),
            }
        )

    def request(self, experiment: str, endpoint: str | None) -> PushRequest:
        """The `PushRequest` of the form (repo ids checked)."""
        if self.what not in WHAT:
            raise UserError(f"choose what to publish: {', '.join(WHAT)}")
        if not self.repo_id:
            raise UserError("type the repo id to publish to: OWNER/NAME, e.g. your-name/letters")
        what = WHAT[self.what]
        request = PushRequest(
            experiment=experiment,
            repo_id=self.repo_id,
            run=self.run if self.run and what != "dataset" else None,
            what=what,  # type: ignore[arg-type]
            dataset_repo_id=self.dataset_repo_id if what == "both" else None,
            merged=self.merged,
            private=self.visibility != "public",
            license=self.license,
            all_samples=self.all_samples and what != "model",
            endpoint=endpoint,
        )
        request.targets()
        return request

    def argv(self, experiment: str, endpoint: str | None, dry_run: bool = False) -> list[str]:
        """The `rtdemo push` arguments of the form."""
        return push_argv(self.request(experiment, endpoint), dry_run)


def hub_endpoint() -> str | None:
    """The Hub this app publishes to: `$HF_ENDPOINT` if set (passed to the job explicitly)."""
    return os.environ.get("HF_ENDPOINT") or None


def hub_token(typed: str | None, oauth: str | None, spaces: bool) -> str:
    """The token of this user: typed, else the signed-in user's (Spaces), else (one person on
    their own machine only, `users_share_server_token`) this machine's `HF_TOKEN` / `hf auth
    login` token; a `UserError` if there is none."""
    if typed and typed.strip():
        return typed.strip()
    if oauth:
        return oauth
    if spaces:
        raise UserError(
            "sign in with Hugging Face (the button at the top) to publish with your own account, "
            "or type a token with write access"
        )
    if not users_share_server_token():  # a shared app: the server's token is its host's
        raise UserError(
            "type a Hugging Face token with write access: this app never publishes with its "
            "server's own token"
        )
    from huggingface_hub import get_token

    token = os.environ.get(TOKEN_ENV) or get_token()
    if not token:
        raise UserError(
            "no Hugging Face token: type one with write access, or set HF_TOKEN where the app "
            "runs (or run `hf auth login` there)"
        )
    return token


def trained_runs(ctx: AppContext, owner: str | None, experiment: str | None) -> list[str]:
    """The experiment's trained runs, Fine-tune-CoT first, newest first within each format."""
    if not owner or not experiment:
        return []
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        runs = [r for r in list_runs(store, exp) if r.status == "trained"]
    runs.sort(key=lambda r: (r.format != "cot", -r.id))
    return [r.name for r in runs]


def publish_command(experiment: str | None, form: PublishForm) -> str:
    """The equivalent command line, or a note on what is missing."""
    try:
        argv = form.argv(experiment or "EXPERIMENT", hub_endpoint())
    except UserError as err:
        return f"# {err}"
    lines = [f"# the token comes from ${TOKEN_ENV} (there is no flag for it)", cli_text(argv)]
    if WHAT.get(form.what) == "both" and not form.dataset_repo_id:
        lines.insert(1, f"# the dataset goes to {form.repo_id}{DATASET_SUFFIX}")
    return "\n".join(lines)


def _push_jobs(store, owner: str, experiment_id: int) -> list[Job]:
    return [j for j in list_jobs(store, owner, experiment_id) if j.kind == "push"]


def start_publish(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    form: PublishForm,
    token: str | None,
    dry_run: bool = False,
) -> tuple[str, str]:
    """Start a push (or, `dry_run`, a preview) job; a status line and the equivalent command."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        busy = [j for j in _push_jobs(store, owner, exp.id) if j.status in ACTIVE]
    if busy:
        raise UserError(f"job {busy[0].id} is publishing already: wait for it, or press Cancel")
    request = form.request(exp.name, hub_endpoint())
    plan = partial(push_plan, request=request, owner=owner, token=token or None, dry_run=dry_run)
    job = ctx.start(owner, push_argv(request, dry_run), plan)
    what = "Preview (dry run)" if dry_run else "Publishing"
    return f"{what}: job {job.id} started.", publish_command(exp.name, form)


class PublishView(NamedTuple):
    """What the tab shows of the experiment's newest push job."""

    status: str
    percent: float
    log: str
    files: str
    card: str
    active: bool


def _result(job: Job) -> dict | None:
    path = job.run_dir / RESULT_NAME
    return json.loads(path.read_text()) if job.status == "done" and path.is_file() else None


def _files(result: dict) -> str:
    lines = []
    for t in result["targets"]:
        lines.append(f"{t['kind']} → {t['repo_id']}")
        lines += [f"  {path}  ({size:,} bytes)" for path, size in t["files"]]
    return "\n".join(lines)


def publish_status(ctx: AppContext, owner: str | None, experiment: str | None) -> PublishView:
    """The running push job of the experiment, else its newest one, with its files and card."""
    if not owner or not experiment:
        return PublishView("Pick an experiment above.", 0.0, "", "", "", False)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        jobs = _push_jobs(store, owner, exp.id)
    if not jobs:
        return PublishView("Nothing published yet.", 0.0, "", "", "", False)
    job = jobs[0]
    status, fraction, log = job_status(job)
    phase = (last_progress(job) or {}).get("phase")
    if job.status in ACTIVE and phase:
        status += f"\n\nNow: {phase}."
    result = _result(job)
    files = card = ""
    if result:
        files = _files(result)
        card = "\n\n".join(
            f"# ==== {t['repo_id']} ({t['kind']}): README.md ====\n{t['card']}"
            for t in result["targets"]
        )
        if result["dry_run"]:
            folder = hide_folder(result["folder"], ctx.workspace)  # not the server's path
            status += f"\n\nPreview: the files a push would upload are in `{folder}`."
        for t in result["targets"]:
            note = "private" if t.get("private") else "public"
            status += f"\n\nPublished the {t['kind']} ({note}): [{t['repo_id']}]({t['url']})"
    elif job.status == "failed":
        status += "\n\nFix what the message says, then press **Publish** again: files that "
        status += "already arrived are not uploaded twice."
    return PublishView(status, round(100 * fraction, 1), log, files, card, job.status in ACTIVE)


def cancel_publish(ctx: AppContext, owner: str | None, experiment: str | None) -> str:
    """Cancel the experiment's running push job (it stops before its next upload)."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        nothing = f"nothing of {exp.name} is being published: nothing to cancel"
        job = cancel_current(store, owner, _push_jobs(store, owner, exp.id), nothing)[0]
    return f"Cancelling job {job.id}: it stops before its next upload."
