"""Pipeline recipes: one YAML file, every stage, validated; unknown keys are rejected.

    rtdemo pipeline --config configs/demo.yaml --workspace DIR

A recipe names the experiment, the task and where its questions come from, the teacher and its
sampling, the student runs (format, D, student, training recipe and overrides) and the
evaluation settings. `load_config` turns the YAML into these dataclasses and says what to change
when something is wrong. The teacher's keys are `TeacherSpec`'s and `GenerationSettings`' fields,
a run's `train:` keys are `TrainSettings`' fields: one definition each, shared with the CLI flags
and the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field

from rtdemo.errors import UserError
from rtdemo.generation.run import GenerationSettings
from rtdemo.teachers.spec import TeacherSpec
from rtdemo.training.recipes import Recipe
from rtdemo.training.settings import TrainSettings
from rtdemo.validation import check_values, from_data, setting, typed

Count = Annotated[int, Field(ge=1)]
Limit = Annotated[int, Field(ge=0)]


@typed
@dataclass(frozen=True)
class SyntheticConfig:
    """A synthetic question set: seed, size, people/words per question (a range with min_length)."""

    seed: int = setting(0, "random seed")
    size: Count = setting(500, "number of questions")
    length: Count = setting(4, "people (coin flip) or words per question")
    min_length: Count | None = setting(None, "mix lengths from this up to length")


@typed
@dataclass(frozen=True)
class TaskConfig:
    """The task and its questions. Synthetic tasks may draw train and test sets separately."""

    key: str = setting(help="task key, e.g. last_letter_concatenation")
    source: Literal["paper", "hub", "synthetic", "file"] | None = setting(
        None, "where the questions come from (default: first available)"
    )
    paper_data: str | None = setting(None, "folder of the paper's files")
    file: str | None = setting(None, "your own JSONL, JSON or CSV file of questions")
    question_column: str = setting("question", "the file's question column")
    answer_column: str = setting("answer", "the file's answer column")
    train_limit: Limit | None = setting(None, "the first N training questions")
    test_limit: Limit | None = setting(None, "the first N test questions")
    synthetic_train: SyntheticConfig | None = setting(None, "if set: all of it is the training set")
    synthetic_test: SyntheticConfig | None = setting(None, "if set: all of it is the test set")


@typed
@dataclass(frozen=True)
class TeacherConfig(GenerationSettings, TeacherSpec):
    """The teacher (`TeacherSpec`'s fields) and how to sample it (`GenerationSettings`'), plus
    whether to measure it on the test split. Keys come from the environment, never from here.
    A `TeacherConfig` is a `TeacherSpec`: `build_teacher(config.teacher, task)` builds it."""

    evaluate_on_test: bool = setting(True, "a greedy D=1 teacher run on the test split")

    def spec(self) -> TeacherSpec:
        """The teacher alone."""
        return TeacherSpec(**{k: getattr(self, k) for k in TeacherSpec.__dataclass_fields__})

    def sampling(self, **changes: Any) -> GenerationSettings:
        """The sampling settings, with `changes` (validated)."""
        values = {k: getattr(self, k) for k in GenerationSettings.__dataclass_fields__}
        return GenerationSettings(**{**values, **changes})


@typed
@dataclass(frozen=True)
class RunConfig:
    """One student run: format, samples per question, student, training recipe and overrides.

    The help texts are `rtdemo train`'s (`rtdemo.validation.add_flags`)."""

    name: str = setting(help="name of this student run, e.g. cot-d1")
    format: Literal["cot", "vanilla"] = setting(
        help="cot: train on kept rationales; vanilla: on gold answers (the baseline)"
    )
    student: str = setting("tiny", "'tiny' (offline), a Hub id or a folder")
    diverse_samples: Count = setting(1, "D: use the first D samples of each question (cot)")
    recipe: Recipe = setting(
        "tiny",
        "tiny: for the tiny student; paper: AdamW 3e-4, batch 8, 20 epochs; small: LoRA for a "
        "small pretrained student on CPU (smollm2-135m)",
    )
    filter_answers: bool = setting(True, "train on rationales whose answer is right only")
    train: dict[str, Any] = setting({}, "TrainSettings fields to override")


@typed
@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings: batch size and the cap on prompt + generated tokens."""

    batch_size: Count = setting(32, "questions per batch", hint="e.g. 32")
    max_total_length: Annotated[int, Field(ge=8)] = setting(
        1024, "cap on prompt + generated tokens", hint="e.g. 1024 as in the paper"
    )


@typed
@dataclass(frozen=True)
class PipelineConfig:
    """A whole Fine-tune-CoT recipe."""

    experiment: Annotated[str, Field(min_length=1)] = setting(help="experiment name")
    task: TaskConfig = setting(help="the task and its questions")
    runs: Annotated[list[RunConfig], Field(min_length=1)] = setting(
        help="the student runs", hint="e.g. runs: [{name: cot, format: cot}]"
    )
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline recipe: strict types, declared ranges, no unknown keys
    (`rtdemo.validation`); a problem is one line naming the file, the key and the value."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no recipe at {path}: see configs/ for examples") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    config = from_data(PipelineConfig, data, path.name)
    for i, run in enumerate(config.runs):
        check_values(TrainSettings, run.train, path.name, ("runs", i, "train"))
        if "student" in run.train:
            raise UserError(
                f"{path.name}: runs[{i}].train.student: give the student as runs[{i}].student"
            )
        if run.format == "cot" and run.diverse_samples > 1 and config.teacher.temperature == 0:
            raise UserError(
                f"{path.name}: runs[{i}].diverse_samples is {run.diverse_samples} but "
                "teacher.temperature is 0: the samples would all be the same; set "
                "teacher.temperature (the paper uses 0.7)"
            )
    names = [r.name for r in config.runs]
    if len(set(names)) != len(names):
        raise UserError(f"{path.name}: run names must be unique, got {names}")
    return config
