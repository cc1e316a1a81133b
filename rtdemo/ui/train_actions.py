"""The Train tab's handlers: the form's runs and command line, start, watch, cancel and resume.

Plain functions over the core (no Gradio; the tests call them directly) that raise `UserError` for
what a user can fix; `train_tab.py` lays out the tab and wires them. Every start goes through
`training_plan`, as `rtdemo train --background` does, so its checks (unknown student, batch size
0, no kept samples, a seq2seq student given a causal recipe) fail in the tab before any job exists.
"both" starts two jobs: the torch queue runs them one after the other.

The student is `tiny`, a prepared registry model (`smollm2-135m`: `STUDENTS` offers it, and
`rtdemo.ui.model_notes.model_note` says whether this server has it and how to prepare it), a Hub
id or a model folder. `suggested_recipe` picks the recipe made for a student (`tiny` for the tiny
one, `small` for a preparable pretrained one) and `recipe_defaults` the form's method, batch size,
learning rate, steps and epochs for a student and recipe (what `settings_for` starts from; the
tiny recipe's steps are the tab's `DEFAULT_STEPS`); `max_length` 0 keeps the recipe's sequence cap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import pandas as pd

from rtdemo.errors import UserError
from rtdemo.hosting.credentials import for_user, user_job_env
from rtdemo.jobs.files import read_progress
from rtdemo.jobs.records import Job, flag_value
from rtdemo.jobs.runner import list_jobs, resume_job
from rtdemo.models import is_registry_name
from rtdemo.training.recipes import RECIPES, settings_for
from rtdemo.training.request import TrainRequest, training_plan
from rtdemo.training.runs import list_runs
from rtdemo.ui.job_view import job_status
from rtdemo.ui.session import ACTIVE, AppContext, cancel_current, check_owner, cli_text
from rtdemo.workspace.store import Experiment, Store

FORMATS = {"Fine-tune-CoT": ("cot",), "vanilla baseline": ("vanilla",), "both": ("cot", "vanilla")}
RECIPE_DEFAULTS = {"tiny": (16, 3e-3), "paper": (8, 3e-4)}  # batch size, learning rate
DEFAULT_STEPS = 200  # a few minutes of the tiny student on a 2-vCPU Space
STUDENTS = ["tiny", "smollm2-135m", "gpt2", "google/flan-t5-large"]  # the dropdown's choices
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # it becomes a folder name


@dataclass(frozen=True)
class TrainForm:
    """The tab's settings; `max_steps` 0 trains for `epochs` instead."""

    student: str = "tiny"
    recipe: str = "tiny"
    method: str = "full"
    formats: str = "both"
    run_name: str = ""
    max_steps: int = DEFAULT_STEPS
    epochs: float = 20
    batch_size: int = RECIPE_DEFAULTS["tiny"][0]
    learning_rate: float = RECIPE_DEFAULTS["tiny"][1]
    diverse_samples: int = 1
    filter_answers: bool = True
    max_length: int = 0  # tokens per training sequence; 0: the recipe's

    @classmethod
    def of(cls, *values: Any, **named: Any) -> TrainForm:
        """The form from the components' values, by field name or in field order (Gradio numbers
        come as floats)."""
        form = cls(*values, **named)
        return cls(
            student=(form.student or "tiny").strip(),
            recipe=form.recipe or "tiny",
            method=form.method or "full",
            formats=form.formats or "both",
            run_name=(form.run_name or "").strip(),
            max_steps=int(form.max_steps or 0),
            epochs=float(form.epochs or 0),
            batch_size=int(form.batch_size or 0),
            learning_rate=float(form.learning_rate or 0),
            diverse_samples=int(form.diverse_samples or 1),
            filter_answers=bool(form.filter_answers),
            max_length=int(form.max_length or 0),
        )

    def runs(self) -> list[tuple[str, str]]:
        """(run name, format) of each run to start: `cot`/`vanilla`, or the typed name."""
        if self.formats not in FORMATS:
            raise UserError(f"format must be one of {', '.join(FORMATS)}")
        if self.max_steps < 0:
            raise UserError("Max steps must be 0 (train for Epochs instead) or more")
        if self.diverse_samples < 1:
            raise UserError("Samples per question (D) must be 1 or more: the first D of each")
        if self.max_length < 0:
            raise UserError("Max length must be 0 (the recipe's) or a number of tokens, e.g. 128")
        fmts = FORMATS[self.formats]
        if not self.run_name:
            return [(f, f) for f in fmts]
        if not _RUN_NAME.fullmatch(self.run_name) or self.run_name.startswith("teacher"):
            raise UserError(
                f"run name {self.run_name!r}: use letters, digits, '.', '_' or '-' (up to 64, "
                "not starting with 'teacher'), e.g. cot-long"
            )
        if len(fmts) == 1:
            return [(self.run_name, fmts[0])]
        return [(f"{self.run_name}-{f}", f) for f in fmts]

    def overrides(self) -> dict[str, Any]:
        """The `TrainSettings` overrides these settings make (as `rtdemo train` builds them)."""
        steps = {"max_steps": self.max_steps} if self.max_steps > 0 else {"epochs": self.epochs}
        length = {"max_length": self.max_length} if self.max_length else {}
        return {
            "method": self.method,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            **steps,
            **length,
        }

    def request(self, experiment: str, run: str, fmt: str) -> TrainRequest:
        """The `TrainRequest` of one run."""
        return TrainRequest(
            experiment=experiment,
            run=run,
            format=fmt,  # type: ignore[arg-type]
            student=self.student,
            recipe=self.recipe,
            diverse_samples=self.diverse_samples,
            filter_answers=self.filter_answers,
            overrides=self.overrides(),
        )

    def argv(self, experiment: str, run: str, fmt: str) -> list[str]:
        """The `rtdemo train` arguments of one run."""
        return self.request(experiment, run, fmt).argv()


def suggested_recipe(student: str | None, recipe: str | None) -> str:
    """The recipe made for `student`: `tiny` for the tiny student, `small` for a preparable
    pretrained model (`smollm2-135m`); any other student keeps `recipe`."""
    student = (student or "").strip()
    if student == "tiny":
        return "tiny"
    if student and is_registry_name(student) and "small" in RECIPES:
        return "small"
    return recipe or "tiny"


class RecipeDefaults(NamedTuple):
    """The form's fields a recipe sets (Max steps 0: train for Epochs)."""

    method: str
    batch_size: int
    learning_rate: float
    max_steps: int
    epochs: float


def recipe_defaults(student: str | None, recipe: str | None) -> RecipeDefaults:
    """What the form starts from for `student` and `recipe`: the recipe's settings, as
    `settings_for` makes them, except that the tiny recipe runs the tab's `DEFAULT_STEPS` (a few
    minutes) rather than its full length; `UserError` for a recipe that does not exist."""
    recipe = recipe or "tiny"
    settings = settings_for((student or "tiny").strip() or "tiny", recipe)
    steps = DEFAULT_STEPS if recipe == "tiny" else settings.max_steps or 0
    return RecipeDefaults(
        settings.method, settings.batch_size, settings.learning_rate, steps, settings.epochs
    )


def train_command(experiment: str | None, form: TrainForm) -> str:
    """The equivalent command line(s) of the form, or a note on what is missing."""
    try:
        runs = form.runs()
    except UserError as err:
        return f"# {err}"
    return "\n".join(cli_text(form.argv(experiment or "EXPERIMENT", r, f)) for r, f in runs)


def _train_jobs(store: Store, owner: str, exp: Experiment) -> list[Job]:
    return [j for j in list_jobs(store, owner, exp.id) if j.kind == "train"]


def _free_name(taken: set[str], name: str) -> str:
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def _check_run_free(store: Store, exp: Experiment, jobs: list[Job], name: str) -> None:
    """Refuse a run name that is trained, being trained, or left unfinished (say what to do)."""
    runs = {r.name: r for r in list_runs(store, exp)}
    taken = set(runs) | {flag_value(j.argv, "--run") or "" for j in jobs}
    if name in runs and runs[name].status == "trained":
        raise UserError(
            f"a run named {name!r} is already trained in {exp.name}: type another **Run name** "
            f"(e.g. {_free_name(taken, name)}), or evaluate it in the Evaluate tab"
        )
    newest = next((j for j in jobs if flag_value(j.argv, "--run") == name), None)
    if newest is not None and newest.status in ACTIVE:
        raise UserError(
            f"run {name!r} is being trained by job {newest.id} ({newest.status}): wait for it, "
            "or press **Cancel**"
        )
    if newest is not None and newest.status in ("failed", "cancelled"):
        raise UserError(
            f"run {name!r} stopped before the end (job {newest.id}, {newest.status}): press "
            f"**Resume** to continue it, or type another **Run name** "
            f"(e.g. {_free_name(taken, name)})"
        )


def planned_steps(form: TrainForm, examples: int) -> int:
    """Optimizer steps the run will take at most (`examples`: an upper bound of its records)."""

    settings = settings_for(form.student, form.recipe, form.overrides())  # bad settings: now
    if settings.max_steps:
        return settings.max_steps
    per_step = settings.batch_size * settings.grad_accum
    return math.ceil(max(examples, 1) / per_step) * math.ceil(settings.epochs)


def start_training(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    form: TrainForm,
    hub_token: str | None = None,
) -> tuple[str, str]:
    """Start the form's run(s) as background jobs; a status line and the equivalent command.

    A student given as a Hub id is read (its config now, the model in the job) with `hub_token`,
    the signed-in user's own token: on a shared app none else, never the server's
    (`rtdemo.hosting.credentials.for_user`)."""
    owner = check_owner(owner)
    runs = form.runs()
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        jobs = _train_jobs(store, owner, exp)
        for name, _ in runs:
            _check_run_free(store, exp, jobs, name)
        active = len(ctx.active_jobs(store, owner))
        questions = store.count_questions(exp.id, "train")
    if not questions:
        raise UserError(f"experiment {exp.name} has no training questions")
    for _, fmt in runs:  # a cot run keeps at most D samples per question
        d = form.diverse_samples if fmt == "cot" else 1
        ctx.quotas.check_steps(owner, planned_steps(form, questions * d))
    ctx.quotas.check_running(owner, active + len(runs) - 1)  # "both" needs two places
    command = train_command(exp.name, form)
    started: list[str] = []
    for name, fmt in runs:  # cot first: it is the one that can lack kept samples
        request = form.request(exp.name, name, fmt)
        try:
            plan = partial(training_plan, request=request, owner=owner)
            job = ctx.start(owner, request.argv(), for_user(plan, hub_token), hub_token)
        except UserError as err:
            if not started:
                raise
            return " ".join(started) + f"\n\n⚠️ run {name} did not start: {err}", command
        state = "queued (it runs after the job before it)" if job.status == "queued" else "started"
        started.append(f"Run **{name}** ({fmt}): job {job.id} {state}.")
    return " ".join(started), command


class TrainingView(NamedTuple):
    """What the tab shows of the experiment's current training job."""

    status: str
    percent: float
    loss: pd.DataFrame
    log: str
    active: bool


def loss_frame(job: Job | None) -> pd.DataFrame:
    """Step and loss of every progress record (a resumed job's repeated steps: the newest)."""
    points = {}
    for record in read_progress(job) if job else []:
        if record.get("step") is not None and record.get("loss") is not None:
            points[int(record["step"])] = float(record["loss"])
    steps = sorted(points)
    return pd.DataFrame({"step": steps, "loss": [points[s] for s in steps]})


def training_status(ctx: AppContext, owner: str | None, experiment: str | None) -> TrainingView:
    """The running training job of the experiment, else its newest one; re-attaches on reload."""
    if not owner or not experiment:
        return TrainingView("Pick an experiment above.", 0.0, loss_frame(None), "", False)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        jobs = _train_jobs(store, owner, exp)
    job = next((j for j in jobs if j.status == "running"), jobs[0] if jobs else None)
    if job is None:
        return TrainingView("No training yet.", 0.0, loss_frame(None), "", False)
    status, fraction, log = job_status(job)
    run = flag_value(job.argv, "--run")
    status += f"\n\nRun **{run}** ({flag_value(job.argv, '--format')}), student "
    status += f"{flag_value(job.argv, '--student') or 'tiny'}."
    if job.status == "done":
        status += " Next: evaluate it in the **Evaluate** tab."
    others = [j for j in jobs if j.status in ACTIVE and j.id != job.id]
    if others:
        status += " Also " + ", ".join(
            f"{j.status}: run {flag_value(j.argv, '--run')} (job {j.id})" for j in others
        )
    active = any(j.status in ACTIVE for j in jobs)
    return TrainingView(status, round(100 * fraction, 1), loss_frame(job), log, active)


def cancel_training(ctx: AppContext, owner: str | None, experiment: str | None) -> str:
    """Cancel the experiment's running training job (else its newest queued one)."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        nothing = f"no training of {exp.name} is queued or running: nothing to cancel"
        job, *others = cancel_current(store, owner, _train_jobs(store, owner, exp), nothing)
    message = (
        f"Cancelling job {job.id} (run {flag_value(job.argv, '--run')}): it stops after the "
        "current step and keeps a checkpoint; **Resume** continues from there."
    )
    if others:
        message += " Another training job is still queued or running: **Cancel** again to stop it."
    return message


def resume_training(
    ctx: AppContext, owner: str | None, experiment: str | None, hub_token: str | None = None
) -> str:
    """Resume the experiment's newest cancelled or failed training of a run not trained since
    (a Hub id student with `hub_token`, as `start_training`)."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        trained = {r.name for r in list_runs(store, exp) if r.status == "trained"}
        seen: set[str | None] = set()
        job = None
        for j in _train_jobs(store, owner, exp):  # newest first: a run's newest job decides
            run = flag_value(j.argv, "--run")
            if run not in seen and run not in trained and j.status in ("failed", "cancelled"):
                job = j
                break
            seen.add(run)
        if job is None:
            raise UserError(f"no cancelled or failed training of {exp.name} to resume")
        ctx.quotas.check_running(owner, len(ctx.active_jobs(store, owner)))
        job = resume_job(store, job.id, owner, env=user_job_env(hub_token))
    return f"Resumed job {job.id} (run {flag_value(job.argv, '--run')}): {job.status}."
