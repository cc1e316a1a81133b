"""The Evaluate tab's handlers: start and watch evaluations of students and of the teacher, the
comparison table, and per-question predictions with failures first.

Plain functions `(ctx, owner, experiment_name, ...)` over the core (no Gradio) that raise
`UserError`; `evaluate_tab.py` lays out the tab and wires them. Students are scored by
`rtdemo evaluate` jobs; the teacher by a greedy generation on the test split
(`rtdemo generate --split test --samples 1 --temperature 0`) with the teacher that wrote the
experiment's rationales. Model output is returned as plain text cells only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import NamedTuple

import pandas as pd

from rtdemo.errors import UserError
from rtdemo.evaluation.request import EvalRequest, evaluation_plan
from rtdemo.evaluation.results import (
    TABLE_COLUMNS,
    comparison_rows,
    comparison_table,
    subject_predictions,
)
from rtdemo.generation.request import GenerationRequest, generation_plan
from rtdemo.generation.samples import load_samples
from rtdemo.hosting.credentials import for_user
from rtdemo.jobs.plan import JobPlan
from rtdemo.jobs.records import Job, flag_value
from rtdemo.jobs.runner import list_jobs
from rtdemo.tasks import get_task
from rtdemo.teachers.spec import TeacherSpec
from rtdemo.training.runs import latest_evaluations, list_runs
from rtdemo.ui.job_view import job_status
from rtdemo.ui.session import ACTIVE, AppContext, cancel_current, check_owner
from rtdemo.workspace.store import Experiment, Store

PREDICTION_COLUMNS = ["#", "correct", "question", "gold answer", "prediction", "output"]


def _is_eval_job(job: Job) -> bool:
    return job.kind == "evaluate" or (
        job.kind == "generate" and flag_value(job.argv, "--split") == "test"
    )


def _eval_jobs(store: Store, owner: str, exp: Experiment) -> list[Job]:
    return [j for j in list_jobs(store, owner, exp.id) if _is_eval_job(j)]


def trained_runs(ctx: AppContext, owner: str | None, experiment: str | None) -> list[str]:
    """The experiment's trained student runs, oldest first."""
    if not owner or not experiment:
        return []
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        return [r.name for r in list_runs(store, exp) if r.status == "trained"]


def start_evaluation(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    runs: Sequence[str] | str | None,
    batch_size: int = 32,
    max_total_length: int = 512,
    hub_token: str | None = None,
) -> str:
    """Start one `rtdemo evaluate` job per run (none picked: every trained run not yet scored).

    A student whose base model is a Hub id (a LoRA run's) is fetched in the job with
    `hub_token`, the signed-in user's own token: on a shared app none else, never the server's
    (`rtdemo.hosting.credentials.for_user`)."""
    owner = check_owner(owner)
    picked = [runs] if isinstance(runs, str) else list(runs or [])
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        if not picked:
            scored = latest_evaluations(store, exp)
            trained = [r.name for r in list_runs(store, exp) if r.status == "trained"]
            picked = [name for name in trained if name not in scored]
            if not picked:
                raise UserError(
                    "no trained run is waiting for evaluation: train one in the Train tab, or "
                    "pick runs in **Student runs** to evaluate them again"
                )
        jobs = _eval_jobs(store, owner, exp)
        busy = {flag_value(j.argv, "--run") for j in jobs if j.status in ACTIVE}
        if clash := sorted(set(picked) & busy):
            raise UserError(f"run {clash[0]} is being evaluated already: wait for it")
        ctx.quotas.check_running(owner, len(ctx.active_jobs(store, owner)) + len(picked) - 1)
    size = int(batch_size or 0), int(max_total_length or 0)
    started: list[str] = []
    for run in picked:
        try:
            request = EvalRequest(exp.name, run, "test", *size)
            plan = partial(evaluation_plan, request=request, owner=owner)
            job = ctx.start(owner, request.argv(), for_user(plan, hub_token), hub_token)
        except UserError as err:
            if not started:
                raise
            return f"Evaluating {'; '.join(started)}.\n\n⚠️ {run} did not start: {err}"
        started.append(f"**{run}**: job {job.id} {job.status}")
    return "Evaluating " + "; ".join(started) + "."


def teacher_request(store: Store, owner: str, exp: Experiment) -> tuple[GenerationRequest, bool]:
    """The generation that runs the experiment's teacher greedily on its test snapshot, and
    whether it needs an API key. The teacher is the one of the newest train-split generation job
    (the Teacher tab's), else the built-in teacher that wrote the stored rationales.
    """
    if not store.count_questions(exp.id, "test"):
        raise UserError(f"experiment {exp.name} has no test questions to evaluate on")
    jobs = [
        j
        for j in list_jobs(store, owner, exp.id)
        if j.kind == "generate" and flag_value(j.argv, "--split") in (None, "train")
    ]
    if jobs:
        request = GenerationRequest.from_argv(jobs[0].argv)
        # An OpenAI-compatible teacher always takes the user's key (never the server's own).
        needs_key = request.teacher.kind == "openai" or bool(jobs[0].env_names)
    else:
        samples = load_samples(store, exp.id, split="train")
        models = {s.model for s in samples if s.teacher == "builtin"}
        if not models:
            raise UserError(
                "no teacher to run here: generate rationales in the Teacher tab first (or run "
                "your teacher there on the test split: 1 sample, temperature 0)"
            )
        rate = float(sorted(models)[0].removeprefix("builtin-err"))
        request = GenerationRequest(
            exp.name,
            TeacherSpec("builtin", error_rate=rate),
            source_argv=tuple(exp.config.get("source_argv", [])),
        )
        needs_key = False
    greedy = replace(request.settings, samples=1, temperature=0.0)
    # The snapshot's whole test split, never a reloaded source.
    return replace(request, split="test", limit=None, settings=greedy), needs_key


def evaluate_teacher(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    api_key: str = "",
    hub_token: str | None = None,
) -> str:
    """Start the teacher's greedy generation on the test split (its accuracy in the table); a
    local teacher given as a Hub id is fetched with `hub_token`, as in `start_evaluation`."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        request, needs_key = teacher_request(store, owner, exp)
        tests = store.count_questions(exp.id, "test")
    key = (api_key or "").strip()
    if needs_key and not key:
        raise UserError(
            "this teacher needs its API key: type it in **Teacher API key** (used for this job "
            "only, never stored)"
        )
    ctx.quotas.check_samples(owner, tests, 1)

    def plan(store: Store) -> JobPlan:
        return generation_plan(
            store, request, owner, api_key=key if needs_key else None, app_key=needs_key
        )

    job = ctx.start(owner, request.argv(), for_user(plan, hub_token), hub_token)
    return f"Teacher on {tests} test questions: job {job.id} {job.status}."


class EvaluationView(NamedTuple):
    """The experiment's current evaluation job as the tab shows it."""

    status: str
    percent: float
    log: str
    active: bool


def evaluation_status(ctx: AppContext, owner: str | None, experiment: str | None) -> EvaluationView:
    """The running evaluation (student or teacher) of the experiment, else its newest one."""
    if not owner or not experiment:
        return EvaluationView("Pick an experiment above.", 0.0, "", False)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        jobs = _eval_jobs(store, owner, exp)
    job = next((j for j in jobs if j.status == "running"), jobs[0] if jobs else None)
    if job is None:
        return EvaluationView("No evaluation yet.", 0.0, "", False)
    status, fraction, log = job_status(job)
    who = flag_value(job.argv, "--run") if job.kind == "evaluate" else "the teacher"
    status += f"\n\nEvaluating **{who}** on the test split."
    active = any(j.status in ACTIVE for j in jobs)
    return EvaluationView(status, round(100 * fraction, 1), log, active)


def cancel_evaluation(ctx: AppContext, owner: str | None, experiment: str | None) -> str:
    """Cancel the experiment's running evaluation (else its newest queued one)."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        nothing = "no evaluation is queued or running: nothing to cancel"
        job = cancel_current(store, owner, _eval_jobs(store, owner, exp), nothing)[0]
    return f"Cancelling job {job.id}: questions answered so far are kept as a partial score."


def results_table(
    ctx: AppContext, owner: str | None, experiment: str | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The comparison table (text cells) and the bar chart's data (who, accuracy %, series)."""
    table, bars = [], []
    if owner and experiment:
        with ctx.store() as store:
            exp = ctx.experiment(store, owner, experiment)
            rows = comparison_rows(store, exp, get_task(exp.task).answer)
            table, bars = comparison_table(rows, store.count_questions(exp.id, "test"))
    # No bars: no chart (an empty frame would fix the plot's colour scale to nothing for good).
    chart = pd.DataFrame(bars, columns=["who", "accuracy", "series"]) if bars else None
    return pd.DataFrame(table, columns=TABLE_COLUMNS), chart


def prediction_subjects(ctx: AppContext, owner: str | None, experiment: str | None) -> list[str]:
    """Who has predictions to browse: evaluated runs, and teachers run on the test split."""
    if not owner or not experiment:
        return []
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        rows = comparison_rows(store, exp, get_task(exp.task).answer)
    return [r["who"] for r in rows if r["metrics"] is not None]


def predictions(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    subject: str | None,
    failures_only: bool = False,
) -> tuple[pd.DataFrame, str]:
    """One subject's per-question predictions, failures first (text cells), and a summary."""
    owner = check_owner(owner)
    if not subject:
        raise UserError("pick whose predictions to show in **Predictions of**")
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        rows = subject_predictions(store, exp, subject)
    if not rows:
        raise UserError(f"{subject} has no test predictions yet: evaluate it first")
    wrong = sum(1 for p in rows if not p.get("correct"))
    shown = [p for p in rows if not p.get("correct")] if failures_only else rows
    data = [
        [
            str(p.get("index", "")),
            "yes" if p.get("correct") else "no",
            str(p.get("question") or ""),
            str(p.get("answer") or ""),
            "—" if p.get("prediction") is None else str(p["prediction"]),
            str(p.get("output") or ""),
        ]
        for p in shown
    ]
    summary = f"{subject}: {wrong} of {len(rows)} wrong (shown first)."
    return pd.DataFrame(data, columns=PREDICTION_COLUMNS), summary
