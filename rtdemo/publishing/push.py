"""Publishing to the Hugging Face Hub: a student (model repo) and its rationales (dataset repo).

    request = PushRequest("letters", "you/letters-student", run="cot", what="both")
    prepared = prepare(store, experiment, request, folder)   # exactly the files a push uploads
    pushed = push(store, experiment, request, token)          # create the repos, upload them

`prepare` writes `<folder>/model/` and/or `<folder>/dataset/` (cards included) and is all a dry
run does; `push` prepares into a temporary folder and uploads each with `HfApi.create_repo` and
`HfApi.upload_folder`, on the endpoint given (`--endpoint`, else `$HF_ENDPOINT` read now, else
huggingface.co) passed explicitly. The token is an argument: never stored, logged or shown.

Trying again is safe: files the repo already holds unchanged are not uploaded again, and a repo
this workspace created (recorded in `publish/<experiment>/pushes.json`, with its endpoint) is
reused; any other existing repo of that name is refused as taken unless `update` says to push
into it. A push deletes the files an earlier push of this workspace wrote to the same repo and
this one does not (e.g. an adapter replaced by merged weights); other files are left alone. Every
failure of the Hub ends in one `UserError` that says what to do.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rtdemo import __version__
from rtdemo.errors import UserError
from rtdemo.publishing import cards
from rtdemo.publishing import files as hub_files
from rtdemo.publishing.errors import hub_error
from rtdemo.training.runs import StudentRun, get_run, list_runs
from rtdemo.workspace.store import Experiment, Store

What = Literal["model", "dataset", "both"]
WHATS: tuple[str, ...] = ("model", "dataset", "both")
DEFAULT_ENDPOINT = "https://huggingface.co"
DATASET_SUFFIX = "-rationales"  # --what both: the dataset repo is OWNER/NAME-rationales
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


@dataclass(frozen=True)
class PushRequest:
    """What to publish, where, and how (the CLI's flags; the token is not part of it)."""

    experiment: str
    repo_id: str  # the model repo; with what="dataset", the dataset repo
    run: str | None = None  # default: the newest trained Fine-tune-CoT run
    what: What = "both"
    dataset_repo_id: str | None = None  # what="both": default OWNER/NAME-rationales
    merged: bool = False  # full weights even when the adapter's base is on the Hub
    private: bool = True
    license: str = "unknown"
    all_samples: bool = False  # the dataset also holds every sample with its verdicts
    update: bool = False  # push into an existing repo this workspace did not create
    endpoint: str | None = None

    def targets(self) -> dict[str, str]:
        """kind ("model", "dataset") → repo id, checked."""
        if self.what not in WHATS:
            raise UserError(f"--what is one of {', '.join(WHATS)}, not {self.what!r}")
        check_repo_id(self.repo_id)
        if self.what == "dataset":
            return {"dataset": self.repo_id}
        if self.what == "model":
            return {"model": self.repo_id}
        dataset = self.dataset_repo_id or f"{self.repo_id}{DATASET_SUFFIX}"
        check_repo_id(dataset)
        if dataset == self.repo_id:
            raise UserError("the model and the dataset need different repo ids")
        return {"model": self.repo_id, "dataset": dataset}


def check_repo_id(repo_id: str) -> None:
    """A `UserError` unless `repo_id` has the Hub's shape OWNER/NAME."""
    if not _REPO_ID.fullmatch(repo_id or "") or ".." in repo_id or "--" in repo_id:
        raise UserError(
            f"repo id {repo_id!r}: use OWNER/NAME (letters, digits, '-', '_', '.'; no '--' or "
            "'..'), e.g. your-name/letters-student"
        )


def resolve_endpoint(endpoint: str | None = None) -> str:
    """`endpoint`, else `$HF_ENDPOINT` (read now, not at import), else huggingface.co."""
    value = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise UserError(f"--endpoint {value!r}: give a URL such as {DEFAULT_ENDPOINT}")
    return value


def choose_run(store: Store, experiment: Experiment, name: str | None) -> StudentRun:
    """The run `name`, else the newest trained Fine-tune-CoT run (else the newest trained)."""
    if name:
        return get_run(store, experiment, name)
    trained = [r for r in list_runs(store, experiment) if r.status == "trained"]
    if not trained:
        raise UserError(
            f"experiment {experiment.name} has no trained student to publish: train one first, "
            "or publish the rationales alone (--what dataset)"
        )
    cot = [r for r in trained if r.format == "cot"]
    return (cot or trained)[-1]


# -- preparing the files --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One repo of a push and the folder holding exactly its files."""

    kind: str  # "model" or "dataset"
    repo_id: str
    folder: Path
    files: list[str]

    def listing(self) -> list[tuple[str, int]]:
        """(path, size in bytes) of every file."""
        return [(f, (self.folder / f).stat().st_size) for f in self.files]


def publish_folder(store: Store, experiment: Experiment) -> Path:
    """The experiment's publishing folder: push records, default dry-run output."""
    return store.workspace / "publish" / f"{experiment.id}-{experiment.name}"


def prepare(
    store: Store,
    experiment: Experiment,
    request: PushRequest,
    folder: Path,
    log: Callable[[str], None] = lambda _: None,
) -> list[Target]:
    """Write the files of every repo of `request` into `folder/<kind>/`; the targets."""

    targets = request.targets()
    endpoint = resolve_endpoint(request.endpoint)
    run = choose_run(store, experiment, request.run) if "model" in targets else None
    if run is None and request.run:
        run = get_run(store, experiment, request.run)
    plan = hub_files.model_plan(run, request.merged) if "model" in targets else None
    facts = hub_files.gather(store, experiment, run)
    records = _load(store, experiment)
    links = cards.Links(
        targets.get("model") or _latest(records, endpoint, "model"),
        targets.get("dataset") or _latest(records, endpoint, "dataset"),
        endpoint,
    )
    out = []
    for kind, repo_id in targets.items():
        target_folder = Path(folder) / kind
        if target_folder.exists():
            shutil.rmtree(target_folder)  # a folder of exactly this push's files
        target_folder.mkdir(parents=True)
        if kind == "model":
            assert run is not None and plan is not None
            shape = "adapter" if plan.adapter else "full weights"
            log(f"preparing the student {run.name} ({shape}) for {repo_id}")
            hub_files.write_model(run, plan, target_folder)
            text = cards.model_card(facts, plan, links, request.license)
        else:
            log(f"preparing the rationale dataset for {repo_id}")
            configs = hub_files.dataset_rows(
                store, experiment, run, facts, all_samples=request.all_samples
            )
            if not configs["curated"]["train"]:
                raise UserError(
                    f"experiment {experiment.name} has no kept rationales to publish: generate "
                    "some (Teacher tab / rtdemo generate) and keep them in review"
                )
            hub_files.write_dataset(configs, target_folder)
            text = cards.dataset_card(facts, configs, links, request.license)
        (target_folder / "README.md").write_text(text, encoding="utf-8")
        files = sorted(p.relative_to(target_folder).as_posix() for p in target_folder.rglob("*"))
        files = [f for f in files if (target_folder / f).is_file()]
        out.append(Target(kind, repo_id, target_folder, files))
    return out


# -- what this workspace pushed -------------------------------------------------------------------


def _records_path(store: Store, experiment: Experiment) -> Path:
    return publish_folder(store, experiment) / "pushes.json"


def _load(store: Store, experiment: Experiment) -> list[dict[str, Any]]:
    path = _records_path(store, experiment)
    return json.loads(path.read_text()) if path.is_file() else []


def _record(store: Store, experiment: Experiment, entry: dict[str, Any]) -> None:
    """Add or update the record of (endpoint, kind, repo) — written atomically."""
    key = ("endpoint", "kind", "repo_id")
    records = [r for r in _load(store, experiment) if any(r[k] != entry[k] for k in key)]
    records.append({**entry, "time": datetime.now(UTC).isoformat(timespec="seconds")})
    path = _records_path(store, experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    tmp.replace(path)


def _find(records: list[dict], endpoint: str, kind: str, repo_id: str) -> dict | None:
    return next(
        (
            r
            for r in records
            if (r["endpoint"], r["kind"], r["repo_id"]) == (endpoint, kind, repo_id)
        ),
        None,
    )


def _latest(records: list[dict], endpoint: str, kind: str) -> str | None:
    """The repo of `kind` this experiment last pushed to `endpoint` (for the cards' links)."""
    pushed = [
        r for r in records if (r["endpoint"], r["kind"], r["state"]) == (endpoint, kind, "pushed")
    ]
    return pushed[-1]["repo_id"] if pushed else None


# -- pushing --------------------------------------------------------------------------------------


def push(
    store: Store,
    experiment: Experiment,
    request: PushRequest,
    token: str | None,
    *,
    log: Callable[[str], None] = lambda _: None,
    progress: Callable[..., None] = lambda **_: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[dict[str, Any]]:
    """Prepare and upload every repo of `request`; per repo: kind, repo_id, url, private, files,
    commit (the commit's URL) and card (the README text)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars

    if not token:
        raise UserError(
            "no Hugging Face token: set HF_TOKEN to a token with write access (on Spaces, sign "
            "in with Hugging Face)"
        )
    endpoint = resolve_endpoint(request.endpoint)
    targets = request.targets()
    disable_progress_bars()  # a job's log gets our lines, not redrawn bars
    api = HfApi(endpoint=endpoint, token=token, library_name="rtdemo", library_version=__version__)
    staging = publish_folder(store, experiment)
    staging.mkdir(parents=True, exist_ok=True)
    total, done, pushed = 2 * len(targets), 0, []
    with tempfile.TemporaryDirectory(prefix="staging-", dir=staging) as folder:
        progress(done=done, total=total, phase="preparing the files")
        prepared = prepare(store, experiment, request, Path(folder), log)
        done += len(prepared)
        for target in prepared:
            if cancelled():
                log("cancelled before uploading " + target.repo_id)
                break
            doing = f"publishing {target.repo_id}"
            progress(done=done, total=total, phase=f"uploading {target.kind} {target.repo_id}")
            earlier = _find(_load(store, experiment), endpoint, target.kind, target.repo_id)
            stale = sorted(set((earlier or {}).get("files", [])) - set(target.files))
            try:
                private = _create(api, store, experiment, request, target, endpoint, log)
                log(f"uploading {len(target.files)} files to {target.repo_id}")
                if stale:
                    log(f"removing what an earlier push wrote and this one does not: {stale}")
                info = api.upload_folder(
                    repo_id=target.repo_id,
                    repo_type=target.kind,
                    folder_path=target.folder,
                    commit_message=f"Publish the Fine-tune-CoT {target.kind} (rtdemo, "
                    f"experiment {experiment.name})",
                    delete_patterns=[glob.escape(path) for path in stale] or None,
                )
            except UserError:
                raise
            except Exception as err:  # the library's and the network's errors, mapped
                raise hub_error(err, endpoint, doing, token) from None
            entry = {"endpoint": endpoint, "kind": target.kind, "repo_id": target.repo_id}
            pushed_entry = {**entry, "state": "pushed", "run": request.run, "files": target.files}
            _record(store, experiment, pushed_entry)
            done += 1
            url = _page(endpoint, target.kind, target.repo_id)
            log(f"published {target.repo_id}: {url}")
            pushed.append(
                {
                    **entry,
                    "url": url,
                    "private": private,
                    "files": target.listing(),
                    "commit": str(info),
                    "card": (target.folder / "README.md").read_text(encoding="utf-8"),
                }
            )
        progress(done=done, total=total, phase="done" if done == total else "stopped")
    return pushed


def _page(endpoint: str, kind: str, repo_id: str) -> str:
    return f"{endpoint}/{'datasets/' if kind == 'dataset' else ''}{repo_id}"


def _forget(store: Store, experiment: Experiment, endpoint: str, kind: str, repo_id: str) -> None:
    records = [r for r in _load(store, experiment) if _find([r], endpoint, kind, repo_id) is None]
    path = _records_path(store, experiment)
    path.write_text(json.dumps(records, indent=2) + "\n")


def _create(api, store, experiment, request, target: Target, endpoint: str, log) -> bool:
    """Create the repo; whether it is private. A 409 is fine for a repo this workspace created
    (a second try) or with `update`, else the name is taken. A private push never goes into an
    existing public repo."""
    from huggingface_hub.errors import HfHubHTTPError

    entry = {"endpoint": endpoint, "kind": target.kind, "repo_id": target.repo_id}
    ours = _find(_load(store, experiment), endpoint, target.kind, target.repo_id) is not None
    if not ours:  # before the request: a create whose answer is lost may still have happened
        _record(store, experiment, {**entry, "state": "creating", "run": request.run})
    try:
        api.create_repo(target.repo_id, repo_type=target.kind, private=request.private)
        visibility = "private" if request.private else "public"
        log(f"created the {visibility} {target.kind} repo {target.repo_id}")
        return request.private
    except HfHubHTTPError as err:
        if err.response is None or err.response.status_code != 409:
            raise
    if not ours and not request.update:
        _forget(store, experiment, endpoint, target.kind, target.repo_id)
        raise UserError(
            f"the name {target.repo_id} is taken on {endpoint}: a {target.kind} repo of that name "
            "exists and this workspace did not create it. Choose another repo id, or push into "
            "it on purpose (--update; files of the same name are replaced)"
        )
    info = api.repo_info(target.repo_id, repo_type=target.kind)
    if request.private and info.private is False:
        raise UserError(
            f"{target.repo_id} already exists and is public, but this push is private: make the "
            "repo private on the Hub first, or push with --public"
        )
    log(f"{target.repo_id} exists already (an earlier push): uploading what changed")
    return bool(info.private)
