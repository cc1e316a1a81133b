"""`rtdemo pipeline` end to end on a tiny recipe, and the results it writes.

The recipe is the offline demo shrunk to seconds: Last Letter Concatenation with the built-in
teacher, 30 synthetic training and 10 test questions, the tiny student trained 3 steps per run
(vanilla and Fine-tune-CoT). Also unit tests of when the paper's figures are comparable and of
the Markdown results table.

    .venv/bin/python -m pytest tests/pipeline/test_pipeline.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.evaluation.paper_results import paper_figure
from rtdemo.evaluation.results import results_markdown
from rtdemo.pipeline.recipe import load_config
from rtdemo.pipeline.run import _paper_source, check_recipe
from rtdemo.training.recipes import settings_for
from rtdemo.workspace.store import Store

REPO = Path(__file__).resolve().parents[2]
METRICS = ("accuracy", "contains_answer", "correct_format", "complete")

RECIPE = """\
experiment: tiny-pipeline
task:
  key: last_letter_concatenation
  source: synthetic
  synthetic_train: {seed: 0, size: 30, length: 2}
  synthetic_test: {seed: 1, size: 10, length: 2}
teacher: {kind: builtin, error_rate: 0.2}
runs:
  - {name: vanilla, format: vanilla, train: {max_steps: MAX_STEPS, batch_size: 4}}
  - {name: cot, format: cot, train: {max_steps: 3, batch_size: 4}}
evaluation: {batch_size: 8, max_total_length: 256}
"""


def write_recipe(folder: Path, vanilla_steps: int = 3) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(RECIPE.replace("MAX_STEPS", str(vanilla_steps)))
    return path


def pipeline(recipe: Path, workspace: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread (2-core machine)
    return subprocess.run(
        [sys.executable, "-m", "rtdemo", "pipeline", "--config", recipe, "--workspace", workspace],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    return done.stdout


def number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_schema(results: dict) -> None:
    """results.json as issue 4 specifies it."""
    assert {"experiment", "task", "wall_seconds", "teacher", "runs"} <= set(results)
    assert (results["experiment"], results["task"]) == (
        "tiny-pipeline",
        "last_letter_concatenation",
    )
    assert number(results["wall_seconds"]) and results["wall_seconds"] > 0
    # The built-in teacher costs nothing, so it is measured on the test split.
    accuracy = results["teacher"]["accuracy"]
    assert number(accuracy) and 0 <= accuracy <= 1
    assert results["teacher"]["paper"] is None  # synthetic data: comparable to no cell
    assert [(r["name"], r["format"]) for r in results["runs"]] == [
        ("vanilla", "vanilla"),
        ("cot", "cot"),
    ]
    required = {"name", "format", "diverse_samples", "train_examples", "student"}
    required |= {"train_seconds", "precision", "metrics"}
    for run in results["runs"]:
        assert required <= set(run), run
        assert run["diverse_samples"] == 1 and run["student"] == "tiny"
        assert isinstance(run["train_examples"], int) and run["train_examples"] > 0
        assert number(run["train_seconds"]) and run["train_seconds"] >= 0
        assert run["precision"] in ("bf16", "fp32")
        assert set(run["metrics"]) == set(METRICS)
        for key in METRICS:
            assert number(run["metrics"][key]) and 0 <= run["metrics"][key] <= 1, (key, run)
        assert run["paper"] is None
    vanilla, cot = results["runs"]
    # Vanilla trains on every question, cot only on the teacher's correct rationales.
    assert cot["train_examples"] < vanilla["train_examples"] <= 30


@pytest.mark.slow
def test_pipeline_writes_results_and_a_second_run_retrains_nothing(tmp_path):
    recipe, workspace = write_recipe(tmp_path), tmp_path / "ws"
    out = ok(pipeline(recipe, workspace))
    folder = workspace / "experiments" / "tiny-pipeline"
    json_path, md_path = folder / "results.json", folder / "results.md"
    assert f"results written to {json_path} and {md_path}" in out
    assert "step 3/3" in out  # both runs trained
    results = json.loads(json_path.read_text())
    check_schema(results)

    md = md_path.read_text()
    assert "| who | format | D | train examples | accuracy |" in md
    teacher_row = next(line for line in md.splitlines() if line.startswith("| teacher:"))
    assert f"| {results['teacher']['accuracy']:.1%} |" in teacher_row
    for run in results["runs"]:
        row = next(line for line in md.splitlines() if line.startswith(f"| {run['name']} (tiny)"))
        assert f"| {run['train_examples']} | {run['metrics']['accuracy']:.1%} |" in row
        assert row.endswith("| — |")  # no paper figure

    # ---- again: nothing is requested from the teacher, nothing is trained ----------------------
    with Store(workspace) as store:
        samples = store.read("SELECT COUNT(*) FROM samples")
        runs = store.read("SELECT * FROM student_runs ORDER BY id")
    finals = sorted(workspace.glob("runs/students/*/*/final/*"))
    stamps = {p: p.stat().st_mtime_ns for p in finals}
    again = ok(pipeline(recipe, workspace))
    assert "step " not in again and again.count("already trained") == 2
    assert re.findall(r"(\d+) requests", again) == ["0", "0"]  # train rationales, teacher on test
    with Store(workspace) as store:
        assert store.read("SELECT COUNT(*) FROM samples") == samples
        assert store.read("SELECT * FROM student_runs ORDER BY id") == runs
    assert {p: p.stat().st_mtime_ns for p in finals} == stamps
    second = json.loads(json_path.read_text())
    check_schema(second)
    for before, after in zip(results["runs"], second["runs"], strict=True):
        for key in ("name", "train_examples", "train_seconds", "precision", "global_step"):
            assert before[key] == after[key]
        # Greedy decoding of the same model on the same questions: the same scores.
        assert before["metrics"] == after["metrics"]

    # ---- a recipe that no longer describes a trained run is refused, not silently reused -----
    changed = pipeline(write_recipe(tmp_path, vanilla_steps=5), workspace)
    assert changed.returncode == 2, changed.stderr
    assert "run vanilla of tiny-pipeline was trained with other settings" in changed.stderr
    assert "max_steps" in changed.stderr and "new name" in changed.stderr


# Unit tests ---------------------------------------------------------------------------------


def test_paper_figures_only_where_the_comparison_holds():
    # The paper's data and split, a student of the paper's family and size: the cell.
    assert paper_figure("coin_flip", "cot", "gpt2", "paper") == pytest.approx(0.7733)
    assert paper_figure(
        "last_letter_concatenation", "vanilla", "openai-community/gpt2", "paper"
    ) == (pytest.approx(0.0133))
    assert paper_figure("gsm8k", "diverse", "google/flan-t5-large", "paper") is None  # "–" cell
    flan = paper_figure("date_understanding", "diverse", "google/flan-t5-large", "paper")
    assert flan == pytest.approx(0.8739)
    # Other data: synthetic, a user's file, the Hub, or not said.
    for source in ("synthetic", "file", "hub", None):
        assert paper_figure("coin_flip", "cot", "gpt2", source) is None
    # Other students: the tiny one, another size of the family, a local folder.
    for student in ("tiny", "gpt2-medium", "google/flan-t5-base", "/models/gpt2", None):
        assert paper_figure("coin_flip", "cot", student, "paper") is None
    # The teacher row: only the paper's teacher on the paper's data.
    assert paper_figure("coin_flip", "teacher", None, "paper", "text-davinci-002") == (
        pytest.approx(0.9004)
    )
    for teacher in ("gpt-4o-mini", "builtin-err0.1", None):
        assert paper_figure("coin_flip", "teacher", None, "paper", teacher) is None
    assert paper_figure("coin_flip", "teacher", None, "synthetic", "text-davinci-002") is None


def test_a_limited_or_synthetic_split_is_not_the_papers(tmp_path):
    def source(task: str, test_only: bool = False) -> str | None:
        path = tmp_path / "r.yaml"
        path.write_text(f"experiment: x\ntask: {task}\nruns: [{{name: a, format: cot}}]\n")
        return _paper_source(load_config(path), test_only=test_only)

    assert source("{key: coin_flip, source: paper}") == "paper"
    assert source("{key: coin_flip, source: paper, test_limit: 50}") is None
    assert source("{key: coin_flip, source: paper, train_limit: 100}") is None
    # The teacher's test accuracy does not depend on how many training questions were used.
    assert source("{key: coin_flip, source: paper, train_limit: 100}", test_only=True) == "paper"
    assert source("{key: coin_flip, source: paper, synthetic_test: {size: 10}}") is None
    synthetic = source("{key: coin_flip, source: synthetic}")
    assert paper_figure("coin_flip", "cot", "gpt2", synthetic) is None


def _results(teacher_accuracy: float | None, paper: float | None = None) -> dict:
    metrics = {"accuracy": 0.5, "contains_answer": 0.625, "correct_format": 1.0, "complete": 0.75}
    run = {
        "name": "cot-d1",
        "format": "cot",
        "diverse_samples": 1,
        "train_examples": 40,
        "student": "gpt2",
        "train_seconds": 12.0,
        "global_step": 30,
        "precision": "fp32",
        "selection": "last step",
        "metrics": metrics,
        "paper": paper,
    }
    vanilla = {**run, "name": "base", "format": "vanilla", "paper": None}
    teacher_metrics = (
        None if teacher_accuracy is None else {**metrics, "accuracy": teacher_accuracy}
    )
    return {
        "experiment": "demo",
        "task": "coin_flip",
        "wall_seconds": 61.2,
        "test_questions": 8,
        "teacher": {
            "label": "gpt-4o-mini",
            "model": "gpt-4o-mini",
            "accuracy": teacher_accuracy,
            "metrics": teacher_metrics,
            "paper": None,
        },
        "runs": [vanilla, run],
    }


def test_results_markdown_shows_an_unmeasured_teacher_as_not_measured():
    md = results_markdown(_results(None))
    teacher = next(line for line in md.splitlines() if line.startswith("| teacher:"))
    assert "not measured" in teacher and "%" not in teacher
    assert md.startswith("# demo: coin_flip\n")
    assert "8 test questions; wall time 61 s." in md


def test_results_markdown_puts_baseline_fine_tune_cot_and_teacher_side_by_side():
    md = results_markdown(_results(0.875, paper=0.7733))
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| who |"))
    rows = lines[header + 2 : header + 5]
    assert rows[0].startswith("| teacher: gpt-4o-mini | Zero-shot-CoT |")
    assert "| 87.5% |" in rows[0] and "not measured" not in md
    assert rows[1] == (
        "| base (gpt2) | vanilla fine-tuning | 1 | 40 | 50.0% | 62.5% | 100.0% | 75.0% | — |"
    )
    assert rows[2] == (
        "| cot-d1 (gpt2) | Fine-tune-CoT | 1 | 40 | 50.0% | 62.5% | 100.0% | 75.0% | 77.3% |"
    )
    assert "cot-d1: 30 steps in 12 s, fp32, model selection: last step" in md


def _recipe(tmp_path: Path, runs: str, evaluation: str = "{}") -> object:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"experiment: x\ntask: {{key: coin_flip, source: synthetic}}\nruns: {runs}\n"
        f"evaluation: {evaluation}\n"
    )
    return load_config(path)


def test_a_bad_last_run_is_refused_before_any_work(tmp_path):
    good = "{name: a, format: vanilla, train: {max_steps: 3}}"
    check_recipe(_recipe(tmp_path, f"[{good}]"))
    cases = {
        # Refused as the recipe loads: one line naming the file, the key and the value.
        "{name: b, format: cot, train: {batch_size: 0}}": "r.yaml: runs[1].train.batch_size must "
        "be >= 1, got 0",
        "{name: b, format: cot, train: {steps: 3}}": "r.yaml: runs[1].train: unknown key 'steps' "
        "(did you mean max_steps?)",
        "{name: b, format: cot, diverse_samples: 0}": "r.yaml: runs[1].diverse_samples must be "
        ">= 1, got 0",
        "{name: '../b', format: cot}": "invalid run name '../b': use 1-64 letters, digits",
    }
    for run, message in cases.items():
        with pytest.raises(UserError, match=re.escape(message)):
            check_recipe(_recipe(tmp_path, f"[{good}, {run}]"))
    with pytest.raises(UserError, match=r"evaluation\.batch_size must be >= 1, got 0"):
        check_recipe(_recipe(tmp_path, f"[{good}]", "{batch_size: 0}"))


def test_a_seq2seq_student_with_the_causal_recipe_is_refused_before_any_work(tmp_path):
    from transformers import T5Config

    folder = tmp_path / "t5"
    folder.mkdir()
    T5Config(d_model=8, d_ff=16, num_layers=1, num_heads=1, d_kv=8).to_json_file(
        folder / "config.json"
    )
    with pytest.raises(UserError, match="is a seq2seq model but the 'tiny' recipe is for causal"):
        check_recipe(_recipe(tmp_path, f"[{{name: t5, format: cot, student: '{folder}'}}]"))
    check_recipe(
        _recipe(tmp_path, f"[{{name: t5, format: cot, student: '{folder}', recipe: paper}}]")
    )


def test_epochs_given_to_a_step_recipe_are_not_silently_ignored():
    assert settings_for("tiny", "tiny").max_steps  # the tiny recipe counts steps
    by_epochs = settings_for("tiny", "tiny", {"epochs": 3})
    assert (by_epochs.max_steps, by_epochs.epochs) == (None, 3)
    both = settings_for("tiny", "tiny", {"epochs": 3, "max_steps": 7})
    assert (both.max_steps, both.epochs) == (7, 3)
    assert settings_for("gpt2", "paper", {"epochs": 2}).epochs == 2
