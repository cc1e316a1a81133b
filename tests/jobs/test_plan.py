"""The command lines typed requests write for their jobs: what the job's `rtdemo` parser reads back
must be the request, whatever the names and numbers (a job that cannot parse its own command line
fails after it was created, and a rounded budget or temperature changes what the job does)."""

from __future__ import annotations

from pathlib import Path

from rtdemo.cli.main import build_parser
from rtdemo.evaluation.request import EvalRequest
from rtdemo.generation.request import GenerationRequest
from rtdemo.generation.run import GenerationSettings
from rtdemo.jobs.plan import number, opt
from rtdemo.publishing.push import PushRequest
from rtdemo.publishing.request import push_argv
from rtdemo.teachers.spec import TeacherSpec
from rtdemo.training.request import TrainRequest
from rtdemo.ui.train_actions import TrainForm, train_command


def test_numbers_read_back_exactly_and_stay_short():
    for value in (0.003, 20.0, 0.7, 12.3456789, 1.23456789e-5, 0.1 + 0.2):
        assert float(number(value)) == value
    assert (number(0.003), number(20.0), number(0.7)) == ("0.003", "20", "0.7")


def test_a_value_that_starts_with_a_dash_is_kept_with_its_flag():
    assert opt("--experiment", "-x") == ["--experiment=-x"]
    assert opt("--experiment", "x") == ["--experiment", "x"]
    assert opt("--budget", -1.5) == ["--budget=-1.5"]


def test_a_generation_request_parses_back_to_itself():
    request = GenerationRequest(
        "-exp",
        TeacherSpec("openai", model="-model", base_url="http://127.0.0.1:9/v1", mode="completions"),
        GenerationSettings(samples=4, temperature=0.123456789, budget=12.3456789, rpm=30.5),
        split="test",
        limit=7,
        source_argv=("--answer-type", "letter", "--letters", "ABC"),
    )
    argv = request.argv()
    args = build_parser().parse_args(argv)
    assert (args.experiment, args.model, args.mode, args.split) == (
        "-exp",
        "-model",
        "completions",
        "test",
    )
    assert (args.samples, args.temperature, args.budget, args.rpm) == (
        4,
        0.123456789,
        12.3456789,
        30.5,
    )
    assert (args.limit, args.answer_type, args.letters, args.stored_questions) == (
        7,
        "letter",
        "ABC",
        True,
    )
    assert GenerationRequest.from_argv(argv) == request


def test_a_training_request_parses_back_to_itself():
    overrides = {"learning_rate": 1.23456789e-5, "epochs": 3.0, "batch_size": 4, "shuffle": False}
    request = TrainRequest(
        "-exp", "-run", "vanilla", student="some/model", diverse_samples=3,
        filter_answers=False, overrides=overrides, processes=2,
    )  # fmt: skip
    args = build_parser().parse_args(request.argv())
    assert (args.experiment, args.run, args.format, args.student) == (
        "-exp",
        "-run",
        "vanilla",
        "some/model",
    )
    assert (args.learning_rate, args.epochs, args.batch_size, args.shuffle) == (
        1.23456789e-5, 3.0, 4, False,
    )  # fmt: skip
    assert (args.diverse_samples, args.no_filter, args.processes) == (3, True, 2)


def test_evaluation_and_push_requests_parse_back():
    args = build_parser().parse_args(EvalRequest("-e", "-r", "train", 8, 512).argv())
    assert (args.experiment, args.run, args.split, args.batch_size, args.max_total_length) == (
        "-e", "-r", "train", 8, 512,
    )  # fmt: skip
    push = PushRequest("-e", "me/student", run="-r", endpoint="http://127.0.0.1:9")
    args = build_parser().parse_args(push_argv(push, dry_run=True))
    assert (args.experiment, args.run, args.endpoint, args.dry_run) == (
        "-e", "-r", "http://127.0.0.1:9", True,
    )  # fmt: skip


def test_the_train_tabs_command_shows_the_student_as_typed_never_a_server_path():
    home = str(Path.home())
    for student in ("~", ".", ".."):
        text = train_command("letters", TrainForm(student=student))
        assert home not in text and str(Path.cwd()) not in text, text
