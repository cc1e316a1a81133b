"""Training recipes by name, with overrides: what `rtdemo train` and pipeline recipes use.

`tiny` is the recipe for the tiny offline student; `paper` is the paper's open-student recipe
(AdamW 3e-4, batch 8, 20 epochs). Overrides are `TrainSettings` fields; unknown ones are refused.
"""

from __future__ import annotations

from typing import Any, Literal

from rtdemo.errors import UserError

Recipe = Literal["tiny", "paper"]
RECIPES: tuple[str, ...] = Recipe.__args__  # type: ignore[attr-defined]


def settings_for(student: str, recipe: str, overrides: dict[str, Any] | None = None):
    """`TrainSettings` for `student` from a named recipe plus overrides, validated: unknown keys,
    wrong types and values out of range are refused with one line (`rtdemo.validation`)."""
    from rtdemo.training.settings import PAPER_RECIPE, TINY_RECIPE, TrainSettings
    from rtdemo.validation import check_values

    if recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    overrides = check_values(TrainSettings, overrides or {}, "bad training settings")
    base = dict(TINY_RECIPE if recipe == "tiny" else PAPER_RECIPE)
    if "epochs" in (overrides or {}) and "max_steps" not in (overrides or {}):
        base.pop("max_steps", None)  # the recipe's step count would silently override epochs
    if recipe == "tiny" and student != "tiny":
        base.pop("kind", None)  # the tiny recipe's hyperparameters, on another causal student
        base["kind"] = "causal"
    return TrainSettings(**{**base, **(overrides or {}), "student": student})
