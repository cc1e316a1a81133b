"""Teacher prices and cost estimates: what a generation run will request and cost, before it runs.

Prices are US dollars per million tokens, by model, from `configs/prices.yaml`, overlaid by the
workspace's `prices.yaml` and by a file the user passes (`--prices`). Offline teachers (built-in,
replay) cost nothing. A model with no price has an unknown cost, said as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from rtdemo.errors import UserError
from rtdemo.teachers.base import Completion, TeacherInfo

DEFAULT_PRICES = Path(__file__).resolve().parents[2] / "configs" / "prices.yaml"
FREE_KINDS = frozenset({"builtin", "replay"})
CHARS_PER_TOKEN = 4  # rough, for estimates only; real usage comes from the server
TYPICAL_RATIONALE_SHARE = 0.7  # of max tokens, for the "typical" estimate
TYPICAL_ANSWER_TOKENS = 8


@dataclass(frozen=True)
class Price:
    """Dollars per million input and output tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The dollar cost of one request's usage."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


FREE = Price(0.0, 0.0)


def _read_table(path: Path) -> dict[str, Price]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read price table {path}: {err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected `model: {{input: X, output: Y}}` lines")
    table = {}
    for model, entry in raw.items():
        try:
            table[str(model)] = Price(float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError):
            raise UserError(
                f"{path}: the price of {model!r} must be `{{input: X, output: Y}}` in dollars "
                "per million tokens"
            ) from None
    return table


def price_table(workspace: Path | None = None, extra: Path | None = None) -> dict[str, Price]:
    """The project's prices, overlaid by the workspace's `prices.yaml` and then `extra`."""
    table = _read_table(DEFAULT_PRICES)
    for path in (workspace / "prices.yaml" if workspace else None, extra):
        if path is not None and (path.is_file() or path == extra):
            table.update(_read_table(path))
    return table


def price_of(info: TeacherInfo, table: dict[str, Price]) -> Price | None:
    """The price of a teacher's model; free for offline teachers; None when unknown."""
    if info.kind in FREE_KINDS:
        return FREE
    if info.kind == "hf":
        return FREE  # a local model: the user's own hardware
    return table.get(info.model)


def usage_cost(price: Price | None, completion: Completion) -> float:
    """The cost of one reply (0 when the price is unknown: the estimate says it is unknown)."""
    return price.cost(completion.prompt_tokens, completion.completion_tokens) if price else 0.0


@dataclass(frozen=True)
class Estimate:
    """What a run will request: request and token counts, typical and worst-case cost."""

    questions: int
    samples: int  # samples still to generate (already stored ones are not counted)
    requests: int
    prompt_tokens: int
    completion_tokens_typical: int
    completion_tokens_max: int
    cost_typical: float | None
    cost_max: float | None

    def describe(self) -> str:
        """One paragraph for people."""
        if self.samples == 0:
            return "nothing to generate: every sample is already stored"
        if self.cost_max is None:
            cost = "cost unknown (no price for this model: add it to prices.yaml)"
        elif self.cost_max == 0:
            cost = "free"
        else:
            cost = f"about ${self.cost_typical:.4f}, at most ${self.cost_max:.4f}"
        return (
            f"{self.samples} samples to generate for {self.questions} questions: "
            f"{self.requests} requests, ~{self.prompt_tokens:,} prompt tokens, "
            f"~{self.completion_tokens_typical:,} completion tokens "
            f"(at most {self.completion_tokens_max:,}); {cost}"
        )


def estimate(
    questions: list[str],
    missing: list[int],
    rationale_done: list[int],
    *,
    max_tokens: int,
    supports_n: bool,
    price: Price | None,
) -> Estimate:
    """Estimate a run: `missing[i]` samples of question i need call 1 and call 2,
    `rationale_done[i]` more need only call 2."""
    requests = prompt = prompt_max = typical = worst = samples = 0
    for question, need, half in zip(questions, missing, rationale_done, strict=True):
        if need + half == 0:
            continue
        q_tokens = math.ceil((len(question) + 40) / CHARS_PER_TOKEN)
        calls_1 = (1 if need else 0) if supports_n else need
        calls_2 = need + half
        samples += need + half
        requests += calls_1 + calls_2
        typical_rationale = int(max_tokens * TYPICAL_RATIONALE_SHARE)
        prompt += calls_1 * q_tokens + calls_2 * (q_tokens + typical_rationale + 6)
        prompt_max += calls_1 * q_tokens + calls_2 * (q_tokens + max_tokens + 6)
        typical += need * typical_rationale + calls_2 * TYPICAL_ANSWER_TOKENS
        worst += need * max_tokens + calls_2 * max_tokens
    cost_typical = price.cost(prompt, typical) if price else None
    cost_max = price.cost(prompt_max, worst) if price else None
    active = sum(1 for m, h in zip(missing, rationale_done, strict=True) if m + h)
    return Estimate(active, samples, requests, prompt, typical, worst, cost_typical, cost_max)
