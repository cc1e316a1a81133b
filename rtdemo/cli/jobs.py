"""`rtdemo jobs list|show|cancel|resume`: watch and steer background jobs from the command line.

    python -m rtdemo jobs list                  # this workspace's jobs, newest first (a queued
                                                # torch job with its place in line: "queued 2/3")
    python -m rtdemo jobs show 3 --json         # status, argv, last progress, log tail
    python -m rtdemo jobs cancel 3 --wait       # stop it, SIGTERM after a grace period
    OPENAI_API_KEY=... python -m rtdemo jobs resume 3

A command that can run as a job takes `--job-id` (`add_job_id_flag`) and wraps its work in
`rtdemo.jobs.context.job_context`. The hidden `jobs _sleep` is one: the tests' fake workload.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from rtdemo.cli.common import add_workspace_flag
from rtdemo.errors import UserError
from rtdemo.hosting.credentials import own_hub_env
from rtdemo.jobs import runner as jobs
from rtdemo.jobs.context import job_context
from rtdemo.jobs.files import LOG_NAME, last_progress, tail_log
from rtdemo.jobs.records import Job
from rtdemo.workspace.store import Store, workspace_path

STATUSES = ("queued", "running", "done", "failed", "cancelled")


def add_job_id_flag(parser: argparse.ArgumentParser) -> None:
    """The `--job-id` flag every command that can run as a background job takes."""
    parser.add_argument(
        "--job-id",
        type=int,
        metavar="N",
        help="run as background job N (the job runner sets this; see `rtdemo jobs`)",
    )


def _summary(progress: dict | None) -> str:
    if not progress:
        return "-"
    if "done" in progress and "total" in progress:
        return f"{progress['done']}/{progress['total']}"
    return ", ".join(f"{k}={v}" for k, v in progress.items() if k != "time")[:30]


def _record(job: Job, place: tuple[int, int] | None, log_lines: int | None = None) -> dict:
    record = {**job.to_dict(), "last_progress": last_progress(job)}
    # A queued torch job's place in line for the torch slot (`rtdemo.jobs.runner.torch_queue`).
    record["queue"] = {"position": place[0], "of": place[1]} if place else None
    if log_lines is not None:
        record["log_tail"] = tail_log(job, log_lines)
    return record


def _places(store: Store) -> dict[int, tuple[int, int]]:
    """Queued torch jobs by id: (N, M), their place in line for the torch slot."""
    line = jobs.torch_queue(store)
    return {job.id: (i, len(line)) for i, job in enumerate(line, 1)}


def cmd_list(args: argparse.Namespace) -> int:
    """Print this workspace's jobs, newest first."""
    with Store(workspace_path(args.workspace)) as store:
        found = jobs.list_jobs(store, statuses=args.status)
        places = _places(store)
    if args.json:
        print(json.dumps([_record(job, places.get(job.id)) for job in found], indent=2))
        return 0
    if not found:
        print("no jobs yet: slow commands take --background")
        return 0
    print(f"{'id':>4}  {'kind':10} {'status':10} {'progress':12} {'created':26} error")
    for job in found:
        progress = _summary(last_progress(job))
        place = places.get(job.id)
        state = f"{job.status} {place[0]}/{place[1]}" if place else job.status
        print(
            f"{job.id:>4}  {job.kind:10} {state:10} {progress:12} {job.created_at:26}"
            f" {job.error or ''}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one job: status, command, last progress and the end of its log."""
    with Store(workspace_path(args.workspace)) as store:
        job = jobs.get_job(store, args.id)
        place = jobs.queue_position(store, job.id)
    record = _record(job, place, args.lines)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    pid = f", process {job.pid}" if job.pid and not job.ended else ""
    print(f"job {job.id} ({job.kind}): {job.status}{pid}")
    if place:
        n, m = place
        print(f"  in line    {n} of {m} queued for the torch slot (owners take turns)")
    print(f"  command    rtdemo {' '.join(job.argv)}")
    print(f"  run folder {job.run_dir}")
    print(f"  created    {job.created_at}")
    print(f"  started    {job.started_at or '-'}")
    print(f"  ended      {job.ended_at or '-'}")
    if job.env_names:
        print(f"  needs      {', '.join(job.env_names)} (in its environment; never stored)")
    if job.error:
        print(f"  error      {job.error}")
    print(f"  progress   {json.dumps(record['last_progress']) if record['last_progress'] else '-'}")
    if record["log_tail"]:
        print(f"--- last {args.lines} lines of {job.run_dir / LOG_NAME} ---")
        print(record["log_tail"])
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Ask a job to stop (and with --wait, make sure it has)."""
    with Store(workspace_path(args.workspace)) as store:
        job = jobs.cancel_job(store, args.id, wait=args.wait, grace=args.grace)
    if job.ended:
        print(f"job {job.id} {job.status}")
    else:
        print(f"cancel requested: job {job.id} stops at its next check (rtdemo jobs show {job.id})")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Start a failed or cancelled job again; its keys come from the environment."""
    with Store(workspace_path(args.workspace)) as store:
        job = jobs.get_job(store, args.id)
        env = {name: os.environ[name] for name in job.env_names if os.environ.get(name)}
        job = jobs.resume_job(store, args.id, env={**own_hub_env(), **env})
    print(f"job {job.id} resumed: {job.status} (rtdemo jobs show {job.id})")
    return 0


def cmd_sleep(args: argparse.Namespace) -> int:
    """A fake workload: `--steps` steps of `--seconds` each, a progress record per step.

    Continues after the last recorded step when resumed; stops at a cancel request unless
    `--ignore-cancel`; fails at step `--fail-at`; with `--require-env NAME`, fails unless the
    variable is set (and records only that it is).
    """
    with job_context(workspace_path(args.workspace), args.job_id) as ctx:
        if args.require_env and not os.environ.get(args.require_env):
            raise UserError(f"{args.require_env} is not set")
        start = int((ctx.last_progress() or {}).get("done", 0))
        for step in range(start + 1, args.steps + 1):
            if args.ignore_cancel:
                time.sleep(args.seconds)
            elif ctx.sleep(args.seconds):
                ctx.log(f"cancelled after {step - 1} steps")
                break
            ctx.progress(done=step, total=args.steps, env_ok=bool(args.require_env))
            if step == args.fail_at:
                raise RuntimeError(f"failing at step {step} as asked")
    return 0


def _job_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="the job's number (see `rtdemo jobs list`)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `jobs` command group to the CLI's subparsers."""
    group = subparsers.add_parser("jobs", help="background jobs: list, show, cancel, resume")
    actions = group.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="this workspace's jobs, newest first")
    listing.add_argument("--json", action="store_true", help="print a JSON list of jobs")
    listing.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        help="only jobs with this status (repeatable; default: all)",
    )
    listing.set_defaults(func=cmd_list)

    show = actions.add_parser("show", help="one job: status, command, progress, log tail")
    _job_id(show)
    show.add_argument("--json", action="store_true", help="print the job as one JSON object")
    show.add_argument("--lines", type=int, default=20, help="log lines to show (default 20)")
    show.set_defaults(func=cmd_show)

    cancel = actions.add_parser("cancel", help="ask a job to stop (a queued job stops at once)")
    _job_id(cancel)
    cancel.add_argument(
        "--wait", action="store_true", help="wait until it stopped, signalling it if it lingers"
    )
    cancel.add_argument(
        "--grace",
        type=float,
        default=jobs.CANCEL_GRACE_S,
        help=f"seconds before SIGTERM, then SIGKILL (default {jobs.CANCEL_GRACE_S:g})",
    )
    cancel.set_defaults(func=cmd_cancel)

    resume = actions.add_parser(
        "resume", help="start a failed or cancelled job again (its keys from the environment)"
    )
    _job_id(resume)
    resume.set_defaults(func=cmd_resume)

    sleep = actions.add_parser("_sleep", help=argparse.SUPPRESS)
    sleep.add_argument("--seconds", type=float, default=0.1, help="seconds per step")
    sleep.add_argument("--steps", type=int, default=10, help="number of steps")
    sleep.add_argument("--fail-at", type=int, help="raise an error after this step")
    sleep.add_argument("--require-env", metavar="NAME", help="fail unless this variable is set")
    sleep.add_argument("--ignore-cancel", action="store_true", help="never check for a cancel")
    sleep.add_argument("--teacher", help="ignored: lets a test stand for a generation with it")
    add_job_id_flag(sleep)
    sleep.set_defaults(func=cmd_sleep)
    # argparse lists a suppressed subcommand anyway (as ==SUPPRESS==): take it out of the help.
    actions._choices_actions = [a for a in actions._choices_actions if a.dest != "_sleep"]

    for parser in (listing, show, cancel, resume, sleep):
        add_workspace_flag(parser)
