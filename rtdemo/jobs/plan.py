"""A job ready to start: what each stage's `*_plan` function returns and `start_plan` starts.

Every stage that runs as a background job (generation, training, evaluation, publishing) has one
typed request and one function that validates it against the workspace and returns a `JobPlan`:
the job's kind, the `rtdemo` command line the job process runs, and the secrets for its
environment. The CLI (`--background`) and the app's tabs both call those functions, so a job
started from either is checked the same way and runs the same command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtdemo.jobs.records import Job
from rtdemo.jobs.runner import LOCAL_OWNER, start_job
from rtdemo.workspace.store import Store


@dataclass(frozen=True)
class JobPlan:
    """A validated job: `argv` never holds a secret; `env` goes to the job's environment only."""

    kind: str  # generate, train, evaluate, push
    argv: list[str]  # `rtdemo <argv>`; the runner adds --job-id
    experiment_id: int | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)
    env_names: list[str] = field(default_factory=list)


def number(value: float) -> str:
    """A float as short as it reads back exactly ("0.003", "20", "1.23456789e-05")."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def opt(flag: str, value: object) -> list[str]:
    """`[flag, value]` for a job's command line; `[flag=value]` when the value starts with '-'
    (an experiment named "-x", a model "-m"), which argparse would otherwise read as a flag."""
    text = number(value) if isinstance(value, float) else str(value)
    return [f"{flag}={text}"] if text.startswith("-") else [flag, text]


def scope_argv(argv: Sequence[str], store: Store, owner: str) -> list[str]:
    """`argv` with the workspace (absolute: a job may be resumed from another folder) and, for
    an owner other than the local user, the owner."""
    out = [*argv, "--workspace", str(Path(store.workspace).resolve())]
    return out if owner == LOCAL_OWNER else [*out, "--owner", owner]


def start_plan(
    store: Store, plan: JobPlan, owner: str = LOCAL_OWNER, fair_key: str | None = None
) -> Job:
    """Start (or queue, for a torch workload) the planned job for `owner`; a queued torch job
    takes its turns as `fair_key` (default: the owner; `rtdemo.jobs.runner`)."""
    return start_job(
        store,
        plan.kind,
        plan.argv,
        owner=owner,
        experiment_id=plan.experiment_id,
        env=plan.env,
        env_names=plan.env_names,
        fair_key=fair_key,
    )
