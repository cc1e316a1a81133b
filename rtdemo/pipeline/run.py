"""The whole method from one recipe: questions → teacher → filter → train (each run) → evaluate.

    rtdemo pipeline --config configs/demo.yaml --workspace DIR

Writes `results.json` and `results.md` in the experiment folder (`<workspace>/experiments/<name>/`)
with the vanilla baseline, Fine-tune-CoT (D=1), diverse (D>1) and the teacher side by side, and
the paper's figure only where the comparison holds. Every stage is resumable: generation requests
only what is missing, trained runs are not trained again, and evaluations are recomputed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rtdemo.curation.curate import training_records
from rtdemo.errors import UserError
from rtdemo.evaluation.evaluate import evaluate, save_eval
from rtdemo.evaluation.paper_results import paper_figure
from rtdemo.evaluation.results import experiment_folder, row_of, teacher_metrics, write_results
from rtdemo.generation.pricing import price_of, price_table
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import SampleKey
from rtdemo.jobs.progress import progress_printer
from rtdemo.pipeline.recipe import PipelineConfig, RunConfig, SyntheticConfig
from rtdemo.redaction import redact_url
from rtdemo.students.loading import student_kind
from rtdemo.tasks import SourceOptions, get_task, load_examples
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.tasks.types import Example, TaskSpec
from rtdemo.teachers.base import Teacher, TeacherInfo
from rtdemo.teachers.spec import KEY_ENV, build_teacher
from rtdemo.training.recipes import fitting_kind, settings_for
from rtdemo.training.runs import (
    StudentRun,
    check_run_name,
    create_run,
    finish_run,
    get_run,
    save_evaluation,
)
from rtdemo.training.settings import TrainSettings
from rtdemo.training.trainer import train
from rtdemo.workspace.store import Experiment, Store

Log = Callable[[str], None]


def _synthetic(key: str, cfg: SyntheticConfig, split: str) -> list[Example]:
    settings = SyntheticSettings(cfg.seed, cfg.size, cfg.length, cfg.min_length)
    return [Example(e.question, e.answer, split, e.index) for e in generate(key, settings)]


def load_questions(config: PipelineConfig) -> tuple[list[Example], list[Example]]:
    """The recipe's training and test questions (a test question never appears in training)."""
    t = config.task
    options = SourceOptions(
        paper_data=Path(t.paper_data) if t.paper_data else None,
        file=Path(t.file) if t.file else None,
        question_column=t.question_column,
        answer_column=t.answer_column,
    )
    splits = {}
    for split, synthetic in (("train", t.synthetic_train), ("test", t.synthetic_test)):
        if synthetic is not None:
            splits[split] = _synthetic(t.key, synthetic, split)
        else:
            splits[split] = load_examples(t.key, split, t.source, options)
    test = splits["test"][: t.test_limit] if t.test_limit is not None else splits["test"]
    seen = {e.question for e in test}
    train = [e for e in splits["train"] if e.question not in seen]
    return (train[: t.train_limit] if t.train_limit is not None else train), test


def recipe_teacher(config: PipelineConfig) -> Teacher:
    """The recipe's teacher (its key from the environment)."""
    return build_teacher(config.teacher.spec(), config.task.key, api_key=os.environ.get(KEY_ENV))


def _generate(
    stage: Stage, teacher: Teacher, questions: list[Example], settings: GenerationSettings
) -> None:
    """Generate what is missing of `questions` × settings.samples; refuse to go on with less."""
    price = price_of(teacher.info, price_table(stage.store.workspace))
    stats = run_generation(
        stage.store, stage.exp, teacher, settings, questions, stage.task.answer, price
    )
    stage.log(
        f"  {stats.done}/{stats.total} samples, {stats.failed} failed, "
        f"{stats.requests} requests, ${stats.spend:.4f}"
    )
    if stats.done < stats.total:
        raise UserError(
            f"the teacher left {stats.total - stats.done} samples unfinished "
            f"({stats.stopped or 'failures'}): run the pipeline again to continue"
        )


def check_recipe(config: PipelineConfig) -> None:
    """Refuse what can be refused before any work: a mistake in the last run's settings must not
    wait for the teacher and the first runs (minutes of training) to surface."""
    for run_cfg in config.runs:
        check_run_name(run_cfg.name)
        try:
            settings = settings_for(run_cfg.student, run_cfg.recipe, run_cfg.train)
            fitting_kind(run_cfg.student, run_cfg.recipe, settings, "use recipe: paper")
        except UserError as err:
            raise UserError(f"run {run_cfg.name}: {err}") from None


@dataclass(frozen=True)
class Stage:
    """What every stage of one pipeline run works in: the recipe, its experiment, the log."""

    config: PipelineConfig
    task: TaskSpec
    store: Store
    exp: Experiment
    log: Log


def run_pipeline(
    config: PipelineConfig,
    workspace: Path,
    log: Log = print,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Run every stage of the recipe; return the results (also written to the experiment folder)."""
    started = time.monotonic()
    task = get_task(config.task.key)
    check_recipe(config)
    with Store(workspace) as store:
        train_q, test_q = load_questions(config)
        exp = open_experiment(store, config, task, train_q + test_q)
        stage = Stage(config, task, store, exp, log)
        log(f"[1/5] {len(train_q)} training and {len(test_q)} test questions of {task.name}")
        teacher = recipe_teacher(config)
        train_key = teacher_rationales(stage, teacher, train_q)
        teacher_result = None
        if config.teacher.evaluate_on_test:
            teacher, teacher_result = teacher_on_test(stage, test_q)
        rows = [
            student_run(stage, i, run_cfg, train_q, test_q, train_key, should_stop)
            for i, run_cfg in enumerate(config.runs, start=1)
        ]
        results = pipeline_results(stage, teacher.info, teacher_result, rows, len(test_q), started)
        paths = write_results(results, experiment_folder(store, exp))
        log(f"[5/5] results written to {paths[0]} and {paths[1]}")
        return results


def open_experiment(
    store: Store, config: PipelineConfig, task: TaskSpec, questions: list[Example]
) -> Experiment:
    """Stage 1: the recipe's experiment (created on the first run) with its questions stored."""
    try:
        exp = store.get_experiment(config.experiment)
    except UserError:
        recipe = json.loads(json.dumps(asdict(config), default=str))
        if recipe["teacher"].get("base_url"):  # never its credentials (rtdemo.redaction)
            recipe["teacher"]["base_url"] = redact_url(recipe["teacher"]["base_url"])
        exp = store.create_experiment(config.experiment, task.key, config={"recipe": recipe})
    if exp.task != task.key:
        raise UserError(f"experiment {exp.name} is for {exp.task}, not {task.key}")
    store.add_questions(exp.id, questions)
    return exp


def teacher_rationales(stage: Stage, teacher: Teacher, train_q: list[Example]) -> SampleKey | None:
    """Stage 2: the teacher's rationales for the training questions, D per question (the most
    any cot run uses); the key of this teacher setting, or None when no run needs rationales."""
    t = stage.config.teacher
    cot_runs = [r for r in stage.config.runs if r.format == "cot"]
    d = max([r.diverse_samples for r in cot_runs] + [t.samples]) if cot_runs else 0
    if not d:
        return None
    stage.log(f"[2/5] teacher: {teacher.info.label or teacher.info.model}, D={d}")
    settings = t.sampling(samples=d)
    _generate(stage, teacher, train_q, settings)
    # Students learn from this recipe's teacher setting only, whatever else is stored.
    return SampleKey.of(teacher.info, settings.temperature, settings.max_tokens)


def teacher_on_test(stage: Stage, test_q: list[Example]) -> tuple[Teacher, dict | None]:
    """Stage 3: a fresh teacher on the test split (greedy, D=1); it and its metrics (None when
    no greedy sample finished: "not measured")."""
    stage.log("[3/5] teacher on the test split (greedy, one sample)")
    t = stage.config.teacher
    teacher = recipe_teacher(stage.config)
    greedy = t.sampling(samples=1, temperature=0.0)
    _generate(stage, teacher, test_q, greedy)
    result = teacher_metrics(stage.store, stage.exp, teacher.info, greedy, stage.task.answer)
    if result is not None:
        save_evaluation(stage.store, stage.exp, "teacher", "test", result, None)
    return teacher, result


def student_run(
    stage: Stage,
    i: int,
    run_cfg: RunConfig,
    train_q: list[Example],
    test_q: list[Example],
    train_key: SampleKey | None,
    should_stop: Callable[[], bool] | None,
) -> dict:
    """Stage 4, run `i` of the recipe: train the student (unless trained), evaluate it on the
    test questions; its row of the results."""
    if should_stop and should_stop():
        raise UserError("cancelled: run the pipeline again to continue")
    settings = settings_for(run_cfg.student, run_cfg.recipe, run_cfg.train)
    kind = "causal" if run_cfg.student == "tiny" else student_kind(run_cfg.student)
    records = training_records(stage.store, stage.exp, run_cfg, train_q, kind, train_key)
    if not records:
        raise UserError(
            f"run {run_cfg.name} has no kept samples to train on: lower the "
            "teacher's error rate, review samples, or use more questions"
        )
    stage.log(
        f"[4/5] run {i}/{len(stage.config.runs)} {run_cfg.name}: {run_cfg.format}, "
        f"{len(records)} examples, student {run_cfg.student}"
    )
    run = train_student(stage, run_cfg, settings, records, should_stop)
    metrics = evaluate_student(stage, run, run_cfg, test_q)
    return run_row(stage, run, run_cfg, metrics)


def train_student(
    stage: Stage,
    run_cfg: RunConfig,
    settings: TrainSettings,
    records: list[dict],
    should_stop: Callable[[], bool] | None,
) -> StudentRun:
    """Train the run on `records`, or reuse it if the recipe's run is already trained."""

    run = _existing_run(stage.store, stage.exp, run_cfg, settings, len(records))
    if run is not None:
        stage.log("  already trained: evaluating it again")
        return run
    run = create_run(
        stage.store,
        stage.exp,
        run_cfg.name,
        run_cfg.format,
        run_cfg.diverse_samples,
        run_cfg.student,
        settings.method,
        len(records),
        asdict(settings),
    )
    result = train(
        records,
        settings,
        run.output_dir,
        resume=True,
        on_progress=_train_log(stage.log),
        should_stop=should_stop,
    )
    if result.stopped:
        raise UserError(
            f"cancelled while training {run.name} at step {result.global_step}: "
            "run the pipeline again to continue from its last checkpoint"
        )
    return finish_run(stage.store, run, asdict(result))


def evaluate_student(
    stage: Stage, run: StudentRun, run_cfg: RunConfig, test_q: list[Example]
) -> dict:
    """The trained run on the test questions: its metrics, saved with its predictions."""

    ev = evaluate(
        run.output_dir / "final",
        test_q,
        stage.task.answer,
        run_cfg.format,
        batch_size=stage.config.evaluation.batch_size,
        max_total_length=stage.config.evaluation.max_total_length,
    )
    save_eval(ev, run.output_dir / "evaluation")
    metrics = ev.metrics.to_dict()
    save_evaluation(
        stage.store,
        stage.exp,
        run.name,
        "test",
        metrics,
        run.output_dir / "evaluation" / "predictions.jsonl",
        run,
    )
    stage.log(f"  accuracy {metrics['accuracy']:.1%} on {len(test_q)} test questions")
    return metrics


def run_row(stage: Stage, run: StudentRun, run_cfg: RunConfig, metrics: dict) -> dict:
    """A student run's entry in results.json."""
    row = row_of(run_cfg.format, run_cfg.diverse_samples)
    return {
        "name": run.name,
        "format": run.format,
        "diverse_samples": run.diverse_samples,
        "train_examples": run.train_examples,
        "student": run.student,
        "student_description": run.result.get("base_description"),  # smollm2-135m: dequantized
        "method": run.method,
        "train_seconds": run.result.get("train_seconds"),
        "global_step": run.result.get("global_step"),
        "precision": run.result.get("precision"),
        "selection": run.result.get("selection", "last checkpoint"),
        "metrics": {
            k: metrics[k] for k in ("accuracy", "contains_answer", "correct_format", "complete")
        },
        "paper": paper_figure(stage.task.key, row, run.student, _paper_source(stage.config)),
    }


def pipeline_results(
    stage: Stage,
    teacher: TeacherInfo,
    teacher_result: dict | None,
    rows: list[dict],
    test_questions: int,
    started: float,
) -> dict:
    """Stage 5: results.json's content: the teacher and every run side by side."""
    return {
        "experiment": stage.exp.name,
        "task": stage.task.key,
        "wall_seconds": round(time.monotonic() - started, 1),
        "teacher": {
            "label": teacher.label or teacher.model,
            "model": teacher.model,
            "accuracy": teacher_result["accuracy"] if teacher_result else None,
            "metrics": teacher_result,
            "paper": paper_figure(
                stage.task.key,
                "teacher",
                None,
                _paper_source(stage.config, test_only=True),
                teacher.model,
            ),
        },
        "test_questions": test_questions,
        "runs": rows,
    }


def _paper_source(config: PipelineConfig, test_only: bool = False) -> str | None:
    """The task's source as far as the paper's figures go: None unless its whole split is used.

    A limited or synthetic split is not the paper's data and split (METHOD.md), so no figure
    is comparable; the teacher's test accuracy depends on the test split only.
    """
    t = config.task
    test_whole = t.test_limit is None and t.synthetic_test is None
    train_whole = t.train_limit is None and t.synthetic_train is None
    return t.source if test_whole and (test_only or train_whole) else None


def _existing_run(
    store: Store, exp: Experiment, run_cfg: RunConfig, settings: TrainSettings, examples: int
) -> StudentRun | None:
    """The run already trained for `run_cfg`, or None if it still needs training.

    A trained run is reused only if the recipe still describes it: otherwise the results would
    show a model trained with other settings under the recipe's name.
    """
    try:
        run = get_run(store, exp, run_cfg.name)
    except UserError:
        return None
    if run.status != "trained":
        return None
    wanted = json.loads(json.dumps(asdict(settings), sort_keys=True, default=str))
    changed = [k for k, v in wanted.items() if k in run.settings and run.settings[k] != v]
    changed += [
        name
        for name, old, new in (
            ("format", run.format, run_cfg.format),
            ("student", run.student, run_cfg.student),
            ("diverse_samples", run.diverse_samples, run_cfg.diverse_samples),
            ("train_examples", run.train_examples, examples),
        )
        if old != new
    ]
    if changed:
        raise UserError(
            f"run {run.name} of {exp.name} was trained with other settings "
            f"({', '.join(sorted(changed))} differ from the recipe): give the run a new name in "
            "the recipe, or use another workspace"
        )
    return run


def _train_log(log: Log) -> Callable[[dict], None]:
    """A training `on_progress` for the pipeline's log: a line every 10 s and at the last step."""
    return progress_printer(lambda line: log(f"  {line}"), 10.0)
