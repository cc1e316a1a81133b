"""What a push uploads: the facts its cards state, the student's model folder, the dataset's files.

    facts = gather(store, experiment, run)            # teacher, counts, settings, results
    plan = model_plan(run, merged=False)              # adapter (base on the Hub) or full weights
    files = write_model(run, plan, folder)            # weights, tokenizer, generation settings
    write_dataset(dataset_rows(store, experiment, run, all_samples=True), folder)

The student: a LoRA run whose base model is a Hub id is published as its adapter (loadable with
peft's `AutoPeftModelFor...`); any other LoRA run (the tiny student's base is a local folder,
nobody else can download it) is merged into full weights; a full fine-tuning is published as it
is. A student whose base `rtdemo models prepare` made (`smollm2-135m`, a dequantized 4-bit copy of
HuggingFaceTB/SmolLM2-135M-Instruct: `student_origin`) counts as based on that Hub model: its
adapter is published with `base_model_name_or_path` set to the Hub id (not the local cache
folder), `--merged` merges it into the dequantized copy it was trained on, and `ModelPlan.origin`
lets the card say which weights were really trained and evaluated. Generation settings make
`pipeline("text-generation")` answer like the evaluation did: greedy, stopping at the
end-of-sequence token, prompt and answer within the paper's 1,024 tokens.

The dataset: the curated rationales the student learnt from (config `curated`, split `train`),
and with `all_samples` every finished teacher sample with its verdicts (config `all_samples`, a
split per split generated). Rows are JSON lines in question and sample order.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdemo.curation.curate import Curated, curate, format_pair, review_counts
from rtdemo.errors import UserError
from rtdemo.evaluation.results import comparison_rows
from rtdemo.generation.samples import load_samples
from rtdemo.students.loading import (
    ADAPTER_CONFIG,
    StudentKind,
    _looks_like_path,
    load_student,
    student_kind,
    student_origin,
)
from rtdemo.tasks import get_task
from rtdemo.training.runs import StudentRun
from rtdemo.workspace.store import Experiment, Store

MAX_TOTAL_LENGTH = 1024  # the paper's cap on prompt + answer tokens (evaluation uses it too)
# Files of a run's final/ that are not the student: the trainer's pickled arguments, peft's
# boilerplate card (ours replaces it).
NOT_PUBLISHED = {"training_args.bin", "README.md"}


@dataclass(frozen=True)
class TeacherSetting:
    """One teacher setting that wrote the experiment's training rationales."""

    label: str
    kind: str
    model: str
    temperature: float
    max_tokens: int
    samples: int  # D: rationales per question


@dataclass(frozen=True)
class ModelPlan:
    """How the student is published: `adapter` (with its Hub `base_model`) or full weights."""

    adapter: bool
    base_model: str | None  # a Hub id, or None (a local or randomly initialised base)
    kind: StudentKind
    method: str  # "lora" or "full", as trained
    # A base `rtdemo models prepare` made: what the weights trained and evaluated really were
    # (`student_origin`: a dequantized copy of `base_model`); None for any other base.
    origin: dict[str, str] | None = None


@dataclass
class Facts:
    """Everything the cards state, gathered from the store (nothing here is guessed)."""

    experiment: Experiment
    task_name: str
    task_description: str
    train_questions: int
    test_questions: int
    teachers: list[TeacherSetting]
    generated: int  # train-split samples asked of the teacher (finished or not)
    counts: dict[str, int]  # `review_counts` of the rationales a run of this D would train on
    filter_answers: bool | None  # None: the run's training set no longer matches either setting
    diverse_samples: int | None  # D the run used (None: the dataset alone, every D)
    run: StudentRun | None
    results: list[dict[str, Any]] = field(default_factory=list)  # `comparison_rows`
    example_question: str = ""  # a test question (else a training one), for the usage snippet


def hub_id(name: str | None) -> str | None:
    """`name` when it names a model on the Hub (not "tiny", not a local folder), else None."""
    if not name or name == "tiny" or _looks_like_path(name):
        return None
    return name


def final_dir(run: StudentRun) -> Path:
    """The trained student's folder, or a `UserError` saying what to do."""
    folder = run.output_dir / "final"
    if run.status != "trained" or not folder.is_dir():
        raise UserError(
            f"run {run.name} has no trained model yet ({run.status}): train it first "
            f"(rtdemo train --run {run.name} ...)"
        )
    return folder


def model_plan(run: StudentRun, merged: bool = False) -> ModelPlan:
    """Adapter or full weights for `run` (`merged` forces full weights); reads no weights."""
    folder = final_dir(run)
    kind = student_kind(folder)
    adapter_config = folder / ADAPTER_CONFIG
    if adapter_config.is_file():
        base = json.loads(adapter_config.read_text())["base_model_name_or_path"]
        origin = student_origin(folder) or student_origin(run.student)  # a prepared copy
        on_hub = origin["base_model"] if origin else hub_id(base)
        return ModelPlan(on_hub is not None and not merged, on_hub, kind, "lora", origin)
    origin = student_origin(run.student)
    on_hub = origin["base_model"] if origin else hub_id(run.student)
    return ModelPlan(False, on_hub, kind, "full", origin)


def _teachers(
    store: Store, experiment: Experiment, d: int | None
) -> tuple[list[TeacherSetting], int]:
    """The teacher settings of the training rationales, and how many samples were asked of them
    (the first `d` of each question, if given)."""
    found: dict[tuple, dict] = {}
    samples = load_samples(store, experiment.id, split="train")
    for s in samples:
        key = (s.teacher, s.model, s.temperature, s.max_tokens)
        entry = found.setdefault(key, {"label": s.settings.get("label") or s.model, "d": 0})
        entry["d"] = max(entry["d"], s.sample_index + 1)
    settings = [
        TeacherSetting(v["label"], k[0], k[1], k[2], k[3], v["d"]) for k, v in found.items()
    ]
    return settings, sum(1 for s in samples if d is None or s.sample_index < d)


def _curated(store: Store, experiment: Experiment, filt: bool, d: int | None) -> list[Curated]:
    return curate(store, experiment, filter_answers=filt, diverse_samples=d, split="train")


def _run_filter(store: Store, experiment: Experiment, run: StudentRun) -> bool | None:
    """Whether the run trained on answer-filtered rationales: the setting whose kept count is the
    run's training-set size (None if neither matches any more, e.g. reviews changed since)."""
    for filt in (True, False):
        kept = sum(c.kept for c in _curated(store, experiment, filt, run.diverse_samples))
        if kept == run.train_examples:
            return filt
    return None


def gather(store: Store, experiment: Experiment, run: StudentRun | None) -> Facts:
    """The facts of the cards for `experiment` and (if given) the published student `run`."""

    task = get_task(experiment.task)
    cot_run = run is not None and run.format == "cot"
    d = run.diverse_samples if cot_run else None
    teachers, generated = _teachers(store, experiment, d)
    examples = store.questions(experiment.id, "test") or store.questions(experiment.id, "train")
    filt = _run_filter(store, experiment, run) if cot_run else True
    counts = review_counts(_curated(store, experiment, filt is not False, d))
    return Facts(
        experiment=experiment,
        task_name=task.name,
        task_description=task.description,
        train_questions=store.count_questions(experiment.id, "train"),
        test_questions=store.count_questions(experiment.id, "test"),
        teachers=teachers,
        generated=generated,
        counts=counts,
        filter_answers=filt,
        diverse_samples=d,
        run=run,
        results=comparison_rows(store, experiment, task.answer) if run else [],
        example_question=examples[0].question if examples else "",
    )


# -- the student's folder -----------------------------------------------------------------------


def generation_settings(model: Any, tokenizer: Any, kind: StudentKind) -> None:
    """Greedy decoding to the end-of-sequence token within the paper's total length, as the
    evaluation generates: what `pipeline(...)` then does with no arguments."""
    config = model.generation_config
    positions = getattr(model.config, "n_positions", None) or getattr(
        model.config, "max_position_embeddings", None
    )
    config.do_sample, config.num_beams = False, 1
    config.max_length = min(MAX_TOTAL_LENGTH, positions or MAX_TOTAL_LENGTH)
    if config.eos_token_id is None:
        config.eos_token_id = tokenizer.eos_token_id
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = config.use_cache = True


def write_model(run: StudentRun, plan: ModelPlan, folder: Path) -> list[str]:
    """Write the published student into `folder` (everything but the card); its file names."""
    folder.mkdir(parents=True, exist_ok=True)
    source = final_dir(run)
    if plan.adapter:
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name not in NOT_PUBLISHED:
                shutil.copyfile(path, folder / path.name)
        # The base the adapter names: the Hub id, not the cache folder of a prepared copy.
        config_path = folder / ADAPTER_CONFIG
        config = json.loads(config_path.read_text())
        if config.get("base_model_name_or_path") != plan.base_model:
            config["base_model_name_or_path"] = plan.base_model
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _adapter_generation_config(source, folder)
    else:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        # Merges an adapter; keeps the checkpoint's dtype, on the CPU.
        model, tokenizer, kind = load_student(
            source, for_training=False, dtype="auto", device="cpu"
        )
        generation_settings(model, tokenizer, kind)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _adapter_generation_config(source: Path, folder: Path) -> None:
    """Greedy settings beside an adapter (its base model's positions are not known here)."""
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(source)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_length=MAX_TOTAL_LENGTH,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    config.save_pretrained(folder)


# -- the dataset's files ------------------------------------------------------------------------


def _row(c: Curated, kind: StudentKind, labels: dict[tuple, str]) -> dict[str, Any]:
    s = c.sample
    pair = format_pair(c.question, c.rationale, c.gold, "cot", kind)
    return {
        "question": c.question,
        "answer": c.gold,
        "rationale": c.rationale.strip(),
        "prompt": pair["prompt"],
        "completion": pair["completion"],
        "teacher_rationale": (s.rationale or "").strip(),
        "edited": c.edited_rationale is not None,
        "teacher_answer": (s.answer_text or "").strip(),
        "teacher_prediction": s.prediction,
        "correct": bool(s.correct),
        "review": c.decision or "not reviewed",
        "kept": c.kept,
        "truncated": s.truncated,
        "question_index": s.idx,
        "sample_index": s.sample_index,
        "teacher": labels.get((s.teacher, s.model), s.model),
        "teacher_model": s.model,
        "temperature": s.temperature,
        "max_tokens": s.max_tokens,
    }


FIELDS = {
    "question": "the task's question (multiple choice verbalised as in the paper)",
    "answer": "the gold answer",
    "rationale": "the rationale trained on: the reviewer's edit if any, else the teacher's",
    "prompt": "the student's prompt in the Fine-tune-CoT format",
    "completion": "the student's target (end-of-sequence token not included)",
    "teacher_rationale": "the teacher's own rationale (call 1), unedited",
    "edited": "whether a reviewer edited the rationale",
    "teacher_answer": "the teacher's answer text (call 2)",
    "teacher_prediction": "the answer read from it by the paper's answer cleansing",
    "correct": "whether that answer equals the gold answer (answer filtering keeps these)",
    "review": "accepted, rejected or not reviewed",
    "kept": "whether the sample is in the curated set",
    "truncated": "whether either teacher call stopped at the token cap",
    "question_index": "the question's index in its source",
    "sample_index": "which of the question's D diverse samples",
    "teacher": "the teacher's name",
    "teacher_model": "the teacher's model id",
    "temperature": "sampling temperature of call 1 (call 2 is greedy)",
    "max_tokens": "token cap of each teacher call",
}


def dataset_rows(
    store: Store,
    experiment: Experiment,
    run: StudentRun | None,
    facts: Facts,
    *,
    all_samples: bool = False,
) -> dict[str, dict[str, list[dict]]]:
    """config → split → rows: `curated` (the kept rationales a run of this D trained on) and,
    with `all_samples`, every finished sample of every split with its verdicts."""
    kind: StudentKind = "causal"
    if run is not None:
        kind = model_plan(run).kind
    labels = {(t.kind, t.model): t.label for t in facts.teachers}
    filt = facts.filter_answers is not False
    curated = _curated(store, experiment, filt, facts.diverse_samples)
    configs = {"curated": {"train": [_row(c, kind, labels) for c in curated if c.kept]}}
    if all_samples:
        everything = curate(store, experiment, filter_answers=filt, split=None)
        splits: dict[str, list[dict]] = {}
        for c in everything:
            splits.setdefault(c.sample.split, []).append(_row(c, kind, labels))
        configs["all_samples"] = splits
    return configs


def write_dataset(configs: dict[str, dict[str, list[dict]]], folder: Path) -> list[str]:
    """Write `<config>/<split>.jsonl` files into `folder`; their paths."""
    written = []
    for config, splits in configs.items():
        for split, rows in splits.items():
            path = folder / config / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = (json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
            path.write_text("".join(lines), encoding="utf-8")
            written.append(path.relative_to(folder).as_posix())
    return written
