"""The Evaluate tab's handlers: the comparison table, the teacher on the test split, predictions
with failures first, and real evaluation jobs of tiny students (one torch thread each).

    .venv/bin/python -m pytest tests/ui/test_evaluate_tab.py
"""

from __future__ import annotations

import pytest

from rtdemo.errors import UserError
from rtdemo.generation.request import GenerationRequest, generation_plan
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.jobs.runner import get_job
from rtdemo.tasks import get_task
from rtdemo.teachers.builtin import BuiltinTeacher
from rtdemo.teachers.spec import TeacherSpec
from rtdemo.ui.evaluate_actions import (
    evaluate_teacher,
    evaluation_status,
    prediction_subjects,
    predictions,
    results_table,
    start_evaluation,
    teacher_request,
)
from rtdemo.ui.train_actions import start_training
from tests.ui import test_train_tab as train_tests
from tests.ui.test_train_tab import OTHER, tiny, wait_for, wait_until_idle

# The Train tab tests' fixtures: job processes cleaned up (autouse), kept rationales.
job_processes, kept = train_tests.job_processes, train_tests.kept

TEACHER = "teacher: Built-in offline teacher"
SOURCE = ["--source", "synthetic", "--seed", "0", "--size", "40", "--length", "2"]


def table_rows(ctx, owner, experiment) -> dict[str, list[str]]:
    table, _ = results_table(ctx, owner, experiment)
    return {row[0]: list(row) for row in table.itertuples(index=False)}


def wait_for_evaluation(ctx, owner, experiment, timeout: float = 240):
    return wait_for(
        lambda: (v := evaluation_status(ctx, owner, experiment)) and not v.active and v,
        timeout,
        "the evaluation to end",
    )


def assert_failures_first(correct: list[str]) -> None:
    assert correct == sorted(correct), correct  # "no" sorts before "yes"


def test_the_teacher_is_not_measured_until_it_answers_the_test_split(ui_ctx, owner, kept):
    rows = table_rows(ui_ctx, owner, kept)
    assert list(rows) == ["teacher: not run on the test split yet"]
    assert rows["teacher: not run on the test split yet"][6] == "not measured"
    assert prediction_subjects(ui_ctx, owner, kept) == []
    assert results_table(ui_ctx, owner, kept)[1] is None  # no bars: no chart

    # The teacher's greedy answers to the 12 test questions (what `generate --split test` stores).
    with ui_ctx.store() as store:
        exp = store.get_experiment(kept, owner)
        tests = store.questions(exp.id, "test")
        answer = get_task(exp.task).answer
        teacher = BuiltinTeacher(error_rate=0.3)
        run_generation(store, exp, teacher, GenerationSettings(), tests, answer, None)
    row = table_rows(ui_ctx, owner, kept)[TEACHER]
    assert row[1] == "teacher (Zero-shot-CoT)" and row[5] == "12" and row[6].endswith("%")
    assert row[10] == "—"  # synthetic questions: no paper figure compares
    _, chart = results_table(ui_ctx, owner, kept)
    assert list(chart.itertuples(index=False, name=None)) == [
        (TEACHER, float(row[6].rstrip("%")), "measured")
    ]

    assert prediction_subjects(ui_ctx, owner, kept) == [TEACHER]
    shown, summary = predictions(ui_ctx, owner, kept, TEACHER)
    wrong = list(shown["correct"]).count("no")
    assert summary == f"{TEACHER}: {wrong} of 12 wrong (shown first)."
    assert 0 < wrong < 12
    assert_failures_first(list(shown["correct"]))
    assert all(isinstance(cell, str) for cell in shown.to_numpy().ravel())  # text only
    only, _ = predictions(ui_ctx, owner, kept, TEACHER, failures_only=True)
    assert len(only) == wrong and set(only["correct"]) == {"no"}


def test_nothing_to_evaluate_says_what_to_do(ui_ctx, owner, letters_experiment):
    with pytest.raises(UserError, match="no trained run is waiting"):
        start_evaluation(ui_ctx, owner, letters_experiment, [])
    with pytest.raises(UserError, match="has no run 'ghost'"):
        start_evaluation(ui_ctx, owner, letters_experiment, ["ghost"])
    with pytest.raises(UserError, match="generate rationales in the Teacher tab first"):
        evaluate_teacher(ui_ctx, owner, letters_experiment)
    with pytest.raises(UserError, match="Predictions of"):
        predictions(ui_ctx, owner, letters_experiment, None)
    with pytest.raises(UserError, match="no test predictions yet"):
        predictions(ui_ctx, owner, letters_experiment, "cot")
    assert evaluation_status(ui_ctx, owner, letters_experiment).status == "No evaluation yet."
    # Another owner sees nothing of it.
    for handler in (evaluation_status, results_table, prediction_subjects):
        with pytest.raises(UserError, match="no experiment named 'letters'"):
            handler(ui_ctx, OTHER, letters_experiment)


def test_the_built_in_teacher_runs_on_the_snapshot_test_questions(ui_ctx, owner, kept):
    with ui_ctx.store() as store:
        request, needs_key = teacher_request(store, owner, store.get_experiment(kept, owner))
    assert not needs_key
    assert request.argv() == [
        "generate", "--experiment", "letters", "--stored-questions", *SOURCE,
        "--split", "test", "--teacher", "builtin", "--error-rate", "0.2",
        "--samples", "1", "--temperature", "0", "--max-tokens", "128", "--concurrency", "8",
    ]  # fmt: skip


@pytest.mark.slow
def test_students_and_teacher_are_evaluated_and_compared(ui_ctx, owner, letters_experiment):
    # The Teacher tab's path: a generation job on the train split.
    request = GenerationRequest(
        "letters", TeacherSpec("builtin", error_rate=0.2), source_argv=tuple(SOURCE)
    )
    generation = ui_ctx.start(
        owner, request.argv(), lambda store: generation_plan(store, request, owner)
    )
    with ui_ctx.store() as store:
        wait_for(lambda: get_job(store, generation.id, owner).ended, 60, "the generation")
        assert get_job(store, generation.id, owner).status == "done"
    start_training(ui_ctx, owner, letters_experiment, tiny("both", steps=4))
    wait_until_idle(ui_ctx, owner, letters_experiment)
    assert table_rows(ui_ctx, owner, letters_experiment)["cot"][6] == "not evaluated"

    message = start_evaluation(ui_ctx, owner, letters_experiment, [], 16, 96)
    assert "**cot**: job" in message and "**vanilla**: job" in message
    view = wait_for_evaluation(ui_ctx, owner, letters_experiment)
    assert "**done**" in view.status and view.percent == 100.0
    rows = table_rows(ui_ctx, owner, letters_experiment)
    assert list(rows) == ["vanilla", "cot", "teacher: not run on the test split yet"]
    for run, kind in (("vanilla", "vanilla baseline"), ("cot", "Fine-tune-CoT")):
        assert rows[run][1:3] == [kind, "tiny"] and rows[run][5] == "12"
        assert rows[run][6].endswith("%")
    shown, summary = predictions(ui_ctx, owner, letters_experiment, "cot")
    assert len(shown) == 12 and summary.startswith("cot: ")
    assert_failures_first(list(shown["correct"]))

    # The teacher: the same teacher as the generation job, greedy, on the test split.
    assert "Teacher on 12 test questions" in evaluate_teacher(ui_ctx, owner, letters_experiment)
    view = wait_for_evaluation(ui_ctx, owner, letters_experiment, 60)
    assert "Evaluating **the teacher**" in view.status and "**done**" in view.status
    teacher_row = table_rows(ui_ctx, owner, letters_experiment)[TEACHER]
    assert teacher_row[5] == "12" and teacher_row[6].endswith("%")
    with ui_ctx.store() as store:
        evaluation = [j for j in store.read("SELECT argv FROM jobs WHERE kind = 'generate'")]
    assert len(evaluation) == 2 and '"--split", "test"' in evaluation[1][0]
    assert '"--error-rate", "0.2"' in evaluation[1][0] and "--stored-questions" in evaluation[1][0]
