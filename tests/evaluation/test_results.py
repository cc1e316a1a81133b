"""The comparison of an experiment's students and teacher (`rtdemo.evaluation.results`): which
rows, which numbers, when the paper's figure is shown, and predictions with failures first."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdemo.evaluation.results import (
    comparison_rows,
    comparison_table,
    failures_first,
    paper_source,
)
from rtdemo.tasks import get_task
from rtdemo.tasks.types import Example
from rtdemo.training.runs import create_run, finish_run, save_evaluation
from rtdemo.workspace.store import Store


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "ws") as opened:
        yield opened


def questions(train: int, test: int) -> list[Example]:
    return [Example(f"q{i}", "ab", "train", i) for i in range(train)] + [
        Example(f"t{i}", "ab", "test", i) for i in range(test)
    ]


def test_the_paper_figure_needs_the_papers_whole_split(store):
    paper = store.create_experiment("full", "coin_flip", config={"source": "paper"})
    store.add_questions(paper.id, questions(350, 150))
    assert paper_source(store, paper) == "paper"
    cut = store.create_experiment("cut", "coin_flip", config={"source": "paper"})
    store.add_questions(cut.id, questions(100, 150))
    assert paper_source(store, cut) is None and paper_source(store, cut, test_only=True) == "paper"
    synthetic = store.create_experiment("syn", "coin_flip", config={"source": "synthetic"})
    store.add_questions(synthetic.id, questions(350, 150))
    assert paper_source(store, synthetic) is None

    # A paper student on the paper's split gets the paper's figure; the tiny student none.
    for name, fmt, student in (("base", "vanilla", "gpt2"), ("mine", "cot", "tiny")):
        run = create_run(store, paper, name, fmt, 1, student, "full", 10, {})
        finish_run(store, run, {})
    rows = comparison_rows(store, paper, get_task("coin_flip").answer)
    assert [(r["who"], r["paper"]) for r in rows][:2] == [("base", 0.60), ("mine", None)]


def test_rows_come_in_the_papers_order_and_only_measured_numbers_show(store):
    exp = store.create_experiment("e", "last_letter_concatenation", config={"source": "synthetic"})
    store.add_questions(exp.id, questions(8, 4))
    for name, fmt, d in (("cot", "cot", 1), ("many", "cot", 4), ("base", "vanilla", 1)):
        run = create_run(store, exp, name, fmt, d, "tiny", "full", 8, {})
        if name != "many":
            run = finish_run(store, run, {})
    metrics = {"count": 2, "accuracy": 0.5, "contains_answer": 1.0, "correct_format": 1.0}
    save_evaluation(store, exp, "cot", "test", {**metrics, "complete": None}, None)
    rows = comparison_rows(store, exp, get_task(exp.task).answer)
    assert [(r["who"], r["row"]) for r in rows] == [
        ("base", "vanilla"),
        ("cot", "cot"),
        ("many", "diverse"),
        ("teacher: not run on the test split yet", "teacher"),
    ]
    table, bars = comparison_table(rows, tests=4)
    by_who = {row[0]: row for row in table}
    assert by_who["cot"][5:] == ["2 of 4", "50.0%", "100.0%", "100.0%", "—", "—"]  # partial
    assert by_who["base"][6] == "not evaluated"
    assert by_who["many"][6] == "not trained yet"
    assert by_who["teacher: not run on the test split yet"][6] == "not measured"
    assert bars == [("cot", 50.0, "measured")]


def test_failures_come_first_in_question_order():
    rows = [{"index": i, "correct": c} for i, c in enumerate([True, False, True, None, False])]
    assert [r["index"] for r in failures_first(rows)] == [1, 3, 4, 0, 2]
