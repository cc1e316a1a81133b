"""Evaluating a trained run as one typed request: what `rtdemo evaluate` and the Evaluate tab
both start.

    request = EvalRequest("demo", "cot")
    exp, run, examples = prepare_evaluation(store, request, owner)   # validated, or UserError
    job = start_plan(store, evaluation_plan(store, request, owner), owner)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rtdemo.errors import UserError
from rtdemo.jobs.plan import JobPlan, opt, scope_argv
from rtdemo.tasks.types import Example
from rtdemo.training.runs import StudentRun, get_run
from rtdemo.workspace.store import Experiment, Store


@dataclass(frozen=True)
class EvalRequest:
    """One trained run to score on a split, greedily, with the paper's answer cleansing."""

    experiment: str
    run: str
    split: Literal["train", "test"] = "test"
    batch_size: int = 32  # questions per generate batch
    max_total_length: int = 1024  # cap on prompt + generated tokens (paper: 1024)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_total_length < 8:
            raise UserError(
                f"--batch-size must be >= 1 (got {self.batch_size}) and --max-total-length >= 8 "
                f"(got {self.max_total_length}); e.g. --batch-size 32 --max-total-length 1024"
            )

    def argv(self) -> list[str]:
        """The `rtdemo evaluate` command line of this request (no workspace or owner)."""
        argv = ["evaluate", *opt("--experiment", self.experiment), *opt("--run", self.run)]
        argv += [*opt("--split", self.split), *opt("--batch-size", self.batch_size)]
        return [*argv, *opt("--max-total-length", self.max_total_length)]


def prepare_evaluation(
    store: Store, request: EvalRequest, owner: str
) -> tuple[Experiment, StudentRun, list[Example]]:
    """The experiment, the trained run and the questions of `request`."""
    exp = store.get_experiment(request.experiment, owner=owner)
    run = get_run(store, exp, request.run)
    if run.status != "trained":
        raise UserError(f"run {run.name} is not trained yet: rtdemo train ... --run {run.name}")
    examples = store.questions(exp.id, request.split)
    if not examples:
        raise UserError(f"experiment {exp.name} has no {request.split} questions")
    return exp, run, examples


def evaluation_plan(store: Store, request: EvalRequest, owner: str) -> JobPlan:
    """The background job of `request`, validated (a `UserError` before any job exists)."""
    exp, _, _ = prepare_evaluation(store, request, owner)
    return JobPlan("evaluate", scope_argv(request.argv(), store, owner), exp.id)
