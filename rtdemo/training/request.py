"""A training run as one typed request: what `rtdemo train` and the Train tab both start.

    request = TrainRequest("demo", "cot", "cot", overrides={"max_steps": 200})
    exp, settings, records = prepare_training(store, request, owner)   # validated, or UserError
    job = start_plan(store, training_plan(store, request, owner), owner)  # rtdemo.jobs.plan

`prepare_training` refuses, before any job exists, what would make a job fail at once: a bad run
name, a run already trained, bad settings, a student of the wrong kind for the recipe, no kept
samples to train on, a batch that does not split over the processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rtdemo.curation.curate import training_records
from rtdemo.errors import UserError
from rtdemo.jobs.plan import JobPlan, opt, scope_argv
from rtdemo.training import launch
from rtdemo.training.recipes import fitting_kind, settings_for
from rtdemo.training.runs import check_run_name, get_run
from rtdemo.workspace.store import Experiment, Store


@dataclass(frozen=True)
class TrainRequest:
    """One student run to train. `overrides` are `TrainSettings` fields on top of the recipe."""

    experiment: str
    run: str
    format: Literal["cot", "vanilla"]
    student: str = "tiny"
    recipe: str = "tiny"
    diverse_samples: int = 1  # cot: the first D samples of each question
    filter_answers: bool = True  # cot: only rationales whose answer is right
    overrides: dict[str, Any] = field(default_factory=dict)
    processes: int | None = None  # data-parallel processes; None: one per GPU, else 1

    def argv(self) -> list[str]:
        """The `rtdemo train` command line of this request (no workspace or owner)."""
        argv = ["train", *opt("--experiment", self.experiment), *opt("--run", self.run)]
        argv += [*opt("--format", self.format), *opt("--student", self.student)]
        argv += opt("--recipe", self.recipe)
        argv += override_argv(self.overrides)
        if self.format == "cot" or self.diverse_samples != 1:
            argv += opt("--diverse-samples", self.diverse_samples)
        argv += [] if self.filter_answers else ["--no-filter"]
        if self.processes is not None:
            argv += opt("--processes", self.processes)
        return argv


def override_argv(overrides: dict[str, Any]) -> list[str]:
    """`TrainSettings` overrides as `rtdemo train` flags (`shuffle: False` is `--no-shuffle`)."""
    argv: list[str] = []
    for name, value in overrides.items():
        if name == "shuffle":
            argv += [] if value else ["--no-shuffle"]
            continue
        argv += opt("--" + name.replace("_", "-"), value)
    return argv


def _check_not_trained(store: Store, exp: Experiment, name: str) -> None:
    """A trained run is never trained again: say so before a job starts, not in its log."""
    try:
        run = get_run(store, exp, name)
    except UserError:
        return
    if run.status == "trained":
        raise UserError(
            f"run {name!r} of {exp.name} is already trained: pick another --run name "
            f"(evaluate it with rtdemo evaluate --experiment {exp.name} --run {name})"
        )


def prepare_training(store: Store, request: TrainRequest, owner: str):
    """The experiment, validated `TrainSettings` and training records of `request`."""

    check_run_name(request.run)  # it becomes a folder: never '../x'
    exp = store.get_experiment(request.experiment, owner=owner)
    _check_not_trained(store, exp, request.run)
    settings = settings_for(request.student, request.recipe, request.overrides)
    kind = fitting_kind(request.student, request.recipe, settings, "choose --recipe paper")
    records = training_records(store, exp, request, store.questions(exp.id, "train"), kind)
    if not records:
        raise UserError(
            f"experiment {exp.name} has no kept samples to train on: generate rationales "
            "(rtdemo generate), accept some in review, or train --format vanilla"
        )
    return exp, settings, records


def check_processes(processes: int, batch_size: int) -> None:
    """The batch must split evenly over the data-parallel processes."""
    if processes < 1:
        raise UserError(f"--processes must be >= 1 (got {processes})")
    if batch_size % processes:
        raise UserError(
            f"batch size {batch_size} does not split evenly over {processes} processes: use a "
            f"multiple of {processes} (each process takes batch size / processes examples)"
        )


def processes_for(requested: int | None, batch_size: int) -> int:
    """The data-parallel processes a run uses (None: one per GPU, else 1), checked against its
    batch size."""
    processes = launch.default_processes() if requested is None else requested
    check_processes(processes, batch_size)
    return processes


def training_plan(store: Store, request: TrainRequest, owner: str) -> JobPlan:
    """The background job of `request`, validated (a `UserError` before any job exists)."""

    exp, settings, _ = prepare_training(store, request, owner)
    if request.student != "tiny" and Path(request.student).expanduser().exists():
        # Absolute in the job (it may be resumed from another folder); never in what the tab
        # shows: a visitor must not learn the server's paths.
        request = replace(request, student=str(Path(request.student).expanduser().resolve()))
    processes_for(request.processes, settings.batch_size)
    return JobPlan("train", scope_argv(request.argv(), store, owner), exp.id)
