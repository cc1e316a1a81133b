"""Training recipes by name, with overrides: what `rtdemo train` and pipeline recipes use.

`tiny` is the recipe for the tiny offline student; `paper` is the paper's open-student recipe
(AdamW 3e-4, batch 8, 20 epochs). Overrides are `TrainSettings` fields; unknown ones are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rtdemo.errors import UserError

RECIPES = ("tiny", "paper")


def settings_for(student: str, recipe: str, overrides: dict[str, Any] | None = None):
    """`TrainSettings` for `student` from a named recipe plus overrides (validated)."""
    from rtdemo.training.settings import PAPER_RECIPE, TINY_RECIPE, TrainSettings

    if recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(overrides or {}) - names)
    if unknown:
        raise UserError(
            f"unknown training setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
        )
    base = dict(TINY_RECIPE if recipe == "tiny" else PAPER_RECIPE)
    if "epochs" in (overrides or {}) and "max_steps" not in (overrides or {}):
        base.pop("max_steps", None)  # the recipe's step count would silently override epochs
    if recipe == "tiny" and student != "tiny":
        base.pop("kind", None)  # the tiny recipe's hyperparameters, on another causal student
        base["kind"] = "causal"
    return TrainSettings(**{**base, **(overrides or {}), "student": student})
