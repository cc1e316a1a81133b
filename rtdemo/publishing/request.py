"""Publishing as a job: the command line of a `PushRequest` and the one function that validates
it and plans its job, for `rtdemo push --background` and the Publish tab alike.

    plan = push_plan(store, request, owner, token=token)            # or dry_run=True, no token
    job = start_plan(store, plan, owner)                             # rtdemo.jobs.plan

A run without a model, a dataset without kept rationales, bad repo ids and a missing token all
fail here, before any job exists. The token reaches only the job, through its environment.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rtdemo.curation.curate import curate
from rtdemo.errors import UserError
from rtdemo.jobs.plan import JobPlan, opt, scope_argv
from rtdemo.publishing.files import final_dir
from rtdemo.publishing.push import PushRequest, choose_run, resolve_endpoint
from rtdemo.workspace.store import Experiment, Store

TOKEN_ENV = "HF_TOKEN"
RESULT_NAME = "push.json"  # a push job's result, in its run folder (the Publish tab reads it)


def push_argv(request: PushRequest, dry_run: bool = False, out: Path | None = None) -> list[str]:
    """The `rtdemo push` command line of `request` (no workspace, owner or token)."""
    argv = ["push", *opt("--experiment", request.experiment), *opt("--repo-id", request.repo_id)]
    argv += opt("--what", request.what)
    if request.run and request.what != "dataset":
        argv += opt("--run", request.run)
    if request.dataset_repo_id and request.what == "both":
        argv += opt("--dataset-repo-id", request.dataset_repo_id)
    argv += ["--private"] if request.private else ["--public"]
    argv += opt("--license", request.license)
    argv += ["--merged"] if request.merged else []
    argv += ["--all-samples"] if request.all_samples and request.what != "model" else []
    argv += ["--update"] if request.update else []
    argv += opt("--endpoint", request.endpoint) if request.endpoint else []
    argv += ["--dry-run"] if dry_run else []
    if out is not None:
        argv += opt("--out", Path(out).expanduser().resolve())
    return argv


def _check_kept(store: Store, exp: Experiment) -> None:
    """A dataset needs kept rationales: say so before anything starts."""

    if not any(c.kept for c in curate(store, exp)):
        raise UserError(
            f"experiment {exp.name} has no kept rationales to publish: generate some (Teacher "
            "tab / rtdemo generate) and keep them in review, or publish the student alone "
            "(--what model)"
        )


def prepare_push(store: Store, request: PushRequest, owner: str) -> tuple[Experiment, PushRequest]:
    """The experiment and `request` with its run made explicit, everything checked."""
    targets = request.targets()
    exp = store.get_experiment(request.experiment, owner=owner)
    if "model" in targets:
        run = choose_run(store, exp, request.run)
        final_dir(run)  # a run without a model fails now, not in a job
        request = replace(request, run=run.name)
    if "dataset" in targets:
        _check_kept(store, exp)
    return exp, request


def require_token(token: str | None, dry_run: bool) -> None:
    """A push needs a token (a dry run does not)."""
    if not dry_run and not token:
        raise UserError(
            f"no Hugging Face token: set {TOKEN_ENV} to a token with write access (or run "
            "`hf auth login`; on Spaces, sign in with Hugging Face). --dry-run needs none"
        )


def push_plan(
    store: Store,
    request: PushRequest,
    owner: str,
    *,
    token: str | None = None,
    dry_run: bool = False,
    out: Path | None = None,
) -> JobPlan:
    """The background job of `request` (a preview with `dry_run`), validated."""
    exp, request = prepare_push(store, request, owner)
    require_token(token, dry_run)
    request = replace(request, endpoint=resolve_endpoint(request.endpoint))
    env = {TOKEN_ENV: token} if token and not dry_run else {}
    argv = scope_argv(push_argv(request, dry_run, out), store, owner)
    return JobPlan("push", argv, exp.id, env=env, env_names=list(env))
