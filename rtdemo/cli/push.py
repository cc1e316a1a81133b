"""`rtdemo push`: publish a trained student and/or its rationale dataset on the Hugging Face Hub.

    HF_TOKEN=hf_... rtdemo push --experiment letters --repo-id you/letters-student
    rtdemo push --experiment letters --repo-id you/letters-student --dry-run   # no token needed
    HF_TOKEN=hf_... rtdemo push --experiment letters --repo-id you/letters-rationales \\
        --what dataset --all-samples --public --background

`--what both` (the default) publishes the student to OWNER/NAME and the rationales to
OWNER/NAME-rationales (`--dataset-repo-id` to choose). Repos are private unless `--public`.
The token comes from the environment only (`HF_TOKEN`, else the one `hf auth login` saved): there
is no flag for it, so it never reaches shell history, job records or logs; a background job gets
it through its environment. `--endpoint URL` (default `$HF_ENDPOINT`, else huggingface.co) is
passed to the Hub client explicitly. `--dry-run` writes exactly the files a push would upload
into `--out` (default `<workspace>/publish/<experiment>/dry-run/`) and lists them.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rtdemo.cli.jobs import add_job_id_flag
from rtdemo.jobs.context import job_context
from rtdemo.jobs.plan import start_plan
from rtdemo.publishing.push import (
    WHATS,
    PushRequest,
    prepare,
    publish_folder,
    push,
    resolve_endpoint,
)
from rtdemo.publishing.request import (
    RESULT_NAME,
    TOKEN_ENV,
    prepare_push,
    push_plan,
    require_token,
)
from rtdemo.workspace.store import Store, workspace_path


def token_of(args: argparse.Namespace) -> str | None:
    """The Hub token: `$HF_TOKEN` or the token `hf auth login` saved."""
    from huggingface_hub import get_token

    return os.environ.get(TOKEN_ENV) or get_token() or None


def request_of(args: argparse.Namespace) -> PushRequest:
    """The `PushRequest` the flags describe (repo ids and endpoint checked)."""
    request = PushRequest(
        experiment=args.experiment,
        repo_id=args.repo_id,
        run=args.run,
        what=args.what,
        dataset_repo_id=args.dataset_repo_id,
        merged=args.merged,
        private=not args.public,
        license=args.license,
        all_samples=args.all_samples,
        update=args.update,
        endpoint=resolve_endpoint(args.endpoint),
    )
    request.targets()
    return request


def _print_targets(targets, header: str) -> None:
    print(header)
    for target in targets:
        print(f"  {target.kind} → {target.repo_id}  ({target.folder})")
        for path, size in target.listing():
            print(f"    {path:48} {size:>12,} bytes")


def cmd_push(args: argparse.Namespace) -> int:
    """Publish (or, with --dry-run, prepare) the student and/or the rationale dataset."""

    request = request_of(args)
    with Store(workspace_path(args.workspace)) as store:
        token = None if args.dry_run else token_of(args)
        if args.background:
            plan = push_plan(
                store, request, args.owner, token=token, dry_run=args.dry_run, out=args.out
            )
            job = start_plan(store, plan, args.owner)
            print(f"started job {job.id} (push) — watch it: rtdemo jobs show {job.id}")
            return 0
        exp, request = prepare_push(store, request, args.owner)
        require_token(token, args.dry_run)
        folder = Path(args.out) if args.out else publish_folder(store, exp) / "dry-run"
        with job_context(store.workspace, args.job_id) as ctx:
            if args.dry_run:
                ctx.progress(done=0, total=1, phase="preparing the files")
                prepared = prepare(store, exp, request, folder, ctx.log)
                result = {
                    "dry_run": True,
                    "folder": str(folder),
                    "targets": [_described(t) for t in prepared],
                }
                ctx.progress(done=1, total=1, phase="done")
                _print_targets(prepared, f"dry run: the files a push would upload, in {folder}")
            else:
                pushed = push(
                    store, exp, request, token, log=ctx.log, progress=ctx.progress,
                    cancelled=ctx.cancelled,
                )  # fmt: skip
                result = {"dry_run": False, "folder": None, "targets": pushed}
                for entry in pushed if args.job_id is None else []:  # a job logs its own lines
                    print(f"published {entry['kind']} {entry['repo_id']}: {entry['url']}")
                    print(f"  {len(entry['files'])} files; commit {entry['commit']}")
            if args.job_id is not None:
                (ctx.run_dir / RESULT_NAME).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _described(target) -> dict:
    return {
        "kind": target.kind,
        "repo_id": target.repo_id,
        "url": None,
        "files": target.listing(),
        "card": (target.folder / "README.md").read_text(encoding="utf-8"),
    }


def register(commands: argparse._SubParsersAction) -> None:
    """Add `push` to the CLI."""
    p = commands.add_parser(
        "push", help="publish a student and/or its rationale dataset on the Hugging Face Hub"
    )
    p.add_argument("--experiment", required=True, help="experiment name")
    p.add_argument(
        "--repo-id",
        required=True,
        metavar="OWNER/NAME",
        help="the model repo (with --what dataset: the dataset repo)",
    )
    p.add_argument("--run", help="the trained run (default: the newest Fine-tune-CoT run)")
    p.add_argument(
        "--what", choices=WHATS, default="both", help="student, rationale dataset, or both"
    )
    p.add_argument(
        "--dataset-repo-id",
        metavar="OWNER/NAME",
        help="with --what both, the dataset repo (default: OWNER/NAME-rationales)",
    )
    p.add_argument(
        "--merged",
        action="store_true",
        help="full weights even when the LoRA adapter's base model is on the Hub",
    )
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--private", action="store_true", default=True, help="private repos (default)")
    vis.add_argument("--public", action="store_true", help="public repos")
    p.add_argument(
        "--license", default="unknown", help="licence id for both cards (default: unknown)"
    )
    p.add_argument(
        "--all-samples",
        action="store_true",
        help="the dataset also holds every teacher sample with its verdicts",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="push into a repo that exists already though this workspace did not create it",
    )
    p.add_argument("--endpoint", metavar="URL", help="Hub URL (default: $HF_ENDPOINT or the Hub)")
    p.add_argument(
        "--dry-run", action="store_true", help="write the files into --out and list them"
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="--dry-run's folder")
    p.add_argument("--background", action="store_true", help="run as a background job")
    p.add_argument("--workspace", type=Path, help="workspace folder (default: $RTDEMO_HOME)")
    p.add_argument("--owner", default="local", help=argparse.SUPPRESS)
    add_job_id_flag(p)
    p.set_defaults(func=cmd_push)
