"""Pipeline recipes: one YAML file, every stage, validated; unknown keys are rejected.

    rtdemo pipeline --config configs/demo.yaml --workspace DIR

A recipe names the experiment, the task and where its questions come from, the teacher and its
sampling, the student runs (format, D, student, training recipe and overrides) and the
evaluation settings. `load_config` turns the YAML into these dataclasses and says what to change
when something is wrong.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rtdemo.errors import UserError


@dataclass(frozen=True)
class SyntheticConfig:
    """A synthetic question set: seed, size, people/words per question (a range with min_length)."""

    seed: int = 0
    size: int = 500
    length: int = 4
    min_length: int | None = None


@dataclass(frozen=True)
class TaskConfig:
    """The task and its questions. Synthetic tasks may draw train and test sets separately."""

    key: str
    source: Literal["paper", "hub", "synthetic", "file"] | None = None
    paper_data: str | None = None
    file: str | None = None
    question_column: str = "question"
    answer_column: str = "answer"
    train_limit: int | None = None
    test_limit: int | None = None
    synthetic_train: SyntheticConfig | None = None  # if set: all of it is the training set
    synthetic_test: SyntheticConfig | None = None  # if set: all of it is the test set


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher and how to sample it (keys come from the environment, never from here)."""

    kind: Literal["builtin", "openai", "hf", "replay"] = "builtin"
    model: str | None = None
    base_url: str | None = None
    mode: Literal["chat", "completions"] = "chat"
    error_rate: float = 0.1
    replay_files: list[str] = field(default_factory=list)
    samples: int = 1
    temperature: float = 0.0
    max_tokens: int = 128
    concurrency: int = 8
    rpm: float | None = None
    budget: float | None = None
    evaluate_on_test: bool = True  # a greedy D=1 teacher run on the test split


@dataclass(frozen=True)
class RunConfig:
    """One student run: format, samples per question, student, training recipe and overrides."""

    name: str
    format: Literal["cot", "vanilla"]
    student: str = "tiny"
    diverse_samples: int = 1
    recipe: Literal["tiny", "paper"] = "tiny"
    filter_answers: bool = True
    train: dict[str, Any] = field(default_factory=dict)  # TrainSettings fields to override


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings: batch size and the cap on prompt + generated tokens."""

    batch_size: int = 32
    max_total_length: int = 1024


@dataclass(frozen=True)
class PipelineConfig:
    """A whole Fine-tune-CoT recipe."""

    experiment: str
    task: TaskConfig
    runs: list[RunConfig]
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)


def _build(cls: type, data: Any, where: str) -> Any:
    """`cls(**data)` with nested dataclasses, rejecting unknown keys with the valid ones listed."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of {cls.__name__} settings, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}"
        )
    values = {}
    for name, value in data.items():
        kind = str(fields[name].type)
        nested = {c.__name__: c for c in (SyntheticConfig, TaskConfig, TeacherConfig, EvalConfig)}
        target = next((c for n, c in nested.items() if n in kind), None)
        if name == "runs":
            if not isinstance(value, list) or not value:
                raise UserError(f"{where}.runs: give a list of at least one run")
            value = [_build(RunConfig, v, f"{where}.runs[{i}]") for i, v in enumerate(value)]
        elif target is not None and value is not None:
            value = _build(target, value, f"{where}.{name}")
        values[name] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise UserError(f"{where}: {err}") from None


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline recipe."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no recipe at {path}: see configs/ for examples") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {err}") from None
    config = _build(PipelineConfig, data, path.name)
    names = [r.name for r in config.runs]
    if len(set(names)) != len(names):
        raise UserError(f"{path.name}: run names must be unique, got {names}")
    return config
