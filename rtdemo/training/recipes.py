"""Training recipes by name, with overrides: what `rtdemo train` and pipeline recipes use.

`tiny` is the recipe for the tiny offline student; `paper` is the paper's open-student recipe
(AdamW 3e-4, batch 8, 20 epochs, full fine-tuning); `small` is for a small pretrained student on a
few CPU cores (`smollm2-135m`: LoRA r 16 at lr 1e-3, batch 8, 3 epochs, 256 tokens, fp32; why, in
`rtdemo.training.settings.SMALL_RECIPE`). Overrides are `TrainSettings` fields; unknown ones are
refused.
"""

from __future__ import annotations

from typing import Any, Literal

from rtdemo.errors import UserError
from rtdemo.students.loading import StudentKind, student_kind
from rtdemo.training.settings import PAPER_RECIPE, SMALL_RECIPE, TINY_RECIPE, TrainSettings
from rtdemo.validation import check_values

Recipe = Literal["tiny", "paper", "small"]
BASES = {"tiny": TINY_RECIPE, "paper": PAPER_RECIPE, "small": SMALL_RECIPE}
RECIPES: tuple[str, ...] = Recipe.__args__  # type: ignore[attr-defined]


def settings_for(student: str, recipe: str, overrides: dict[str, Any] | None = None):
    """`TrainSettings` for `student` from a named recipe plus overrides, validated: unknown keys,
    wrong types and values out of range are refused with one line (`rtdemo.validation`)."""

    if recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    overrides = check_values(TrainSettings, overrides or {}, "bad training settings")
    base = dict(BASES[recipe])
    if "epochs" in (overrides or {}) and "max_steps" not in (overrides or {}):
        base.pop("max_steps", None)  # the recipe's step count would silently override epochs
    if recipe == "tiny" and student != "tiny":
        base.pop("kind", None)  # the tiny recipe's hyperparameters, on another causal student
        base["kind"] = "causal"
    return TrainSettings(**{**base, **(overrides or {}), "student": student})


def fitting_kind(student: str, recipe: str, settings: TrainSettings, fix: str) -> StudentKind:
    """The student's kind ("causal" for the tiny one), or a `UserError` when the recipe is for
    students of the other kind; `fix` says how to pick another recipe (e.g. "choose --recipe
    paper")."""
    if student == "tiny":
        return "causal"
    kind = student_kind(student)
    if settings.kind not in ("auto", kind):
        raise UserError(
            f"{student} is a {kind} model but the {recipe!r} recipe is for {settings.kind} "
            f"students: {fix}, or another student"
        )
    return kind
