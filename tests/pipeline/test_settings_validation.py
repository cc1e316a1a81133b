"""Malformed settings, in recipes, on the command line and from the app: one line that names the
key and the value and says what is expected, exit status 2, never a traceback.

Every setting has one typed definition (`TrainSettings`, `GenerationSettings`, `TeacherSpec`, the
recipe dataclasses); `rtdemo.validation` checks recipes, CLI flags and the app's values against it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.generation.run import GenerationSettings
from rtdemo.pipeline.recipe import load_config
from rtdemo.teachers.spec import TeacherSpec
from rtdemo.training.recipes import settings_for
from rtdemo.training.settings import TrainSettings
from rtdemo.validation import check_values, from_data

TASK = "experiment: x\ntask: {key: coin_flip, source: synthetic}\n"
RUN = "runs: [{name: a, format: cot}]\n"


def _one_line(stderr: str) -> str:
    """The error line of a failed command: exactly one line, `error: ...`, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


# Recipes --------------------------------------------------------------------------------------

BAD_RECIPES = {
    # The three: a quoted number, a word for a number, D = 0 silently run as D = 1.
    "quoted diverse_samples": (
        TASK + "runs: [{name: a, format: cot, diverse_samples: '2'}]\n",
        "bad.yaml: runs[0].diverse_samples: expected an integer, got '2' (a string)",
    ),
    "learning_rate: fast": (
        TASK + "runs: [{name: a, format: cot, train: {learning_rate: fast}}]\n",
        "bad.yaml: runs[0].train.learning_rate: expected a number, got 'fast' (a string)",
    ),
    "teacher samples 0": (
        TASK + RUN + "teacher: {samples: 0}\n",
        "bad.yaml: teacher.samples must be >= 1, got 0",
    ),
    # PyYAML reads 3e-4 (no dot) as text.
    "3e-4 is text in YAML": (
        TASK + "runs: [{name: a, format: cot, train: {learning_rate: 3e-4}}]\n",
        "bad.yaml: runs[0].train.learning_rate: expected a number, got '3e-4' (a string): "
        "write 3.0e-4 (YAML reads 3e-4 as text)",
    ),
    "unknown nested key": (
        TASK + RUN + "teacher: {kind: builtin, temprature: 0.7}\n",
        "bad.yaml: teacher: unknown key 'temprature' (did you mean temperature?); valid keys: "
        "kind,",
    ),
    "unknown top-level key": (
        TASK + RUN + "evaluate: {batch_size: 8}\n",
        "bad.yaml: unknown key 'evaluate' (did you mean evaluation?)",
    ),
    "runs is a mapping, not a list": (
        TASK + "runs: {name: a, format: cot}\n",
        "bad.yaml: runs: expected a list, got {'name': 'a', 'format': 'cot'} (a mapping)",
    ),
    "no runs": (TASK + "runs: []\n", "bad.yaml: runs: give at least 1 item, got an empty list"),
    "replay_files is one string": (
        TASK + RUN + "teacher: {kind: replay, replay_files: a.jsonl}\n",
        "bad.yaml: teacher.replay_files: expected a list, got 'a.jsonl' (a string)",
    ),
    "evaluation batch 0": (
        TASK + RUN + "evaluation: {batch_size: 0}\n",
        "bad.yaml: evaluation.batch_size must be >= 1, got 0",
    ),
    "train override with unknown key": (
        TASK + "runs: [{name: a, format: cot, train: {lr: 0.001}}]\n",
        "bad.yaml: runs[0].train: unknown key 'lr'; valid keys: student, method, epochs",
    ),
    "precision fp16": (
        TASK + "runs: [{name: a, format: cot, train: {precision: fp16}}]\n",
        "bad.yaml: runs[0].train.precision must be one of 'auto', 'bf16', 'fp32', got 'fp16'",
    ),
    "format txt": (
        TASK + "runs: [{name: a, format: txt}]\n",
        "bad.yaml: runs[0].format must be 'cot' or 'vanilla', got 'txt'",
    ),
    "missing format": (
        TASK + "runs: [{name: a}]\n",
        "bad.yaml: runs[0]: missing key 'format'",
    ),
    "a half sample": (
        TASK + RUN + "teacher: {samples: 1.5, temperature: 0.7}\n",
        "bad.yaml: teacher.samples: expected an integer, got 1.5",
    ),
    "yes for a budget": (
        TASK + RUN + "teacher: {budget: yes}\n",
        "bad.yaml: teacher.budget: expected a number, got true",
    ),
    "teacher is a number": (
        TASK + RUN + "teacher: 3\n",
        "bad.yaml: teacher: expected a mapping of settings, got 3",
    ),
    "temperature above 2": (
        TASK + RUN + "teacher: {temperature: 5}\n",
        "bad.yaml: teacher.temperature must be <= 2, got 5",
    ),
    "diverse samples at temperature 0": (
        TASK + "runs: [{name: a, format: cot, diverse_samples: 4}]\n",
        "bad.yaml: runs[0].diverse_samples is 4 but teacher.temperature is 0",
    ),
    "synthetic size below 1": (
        "experiment: x\ntask: {key: coin_flip, source: synthetic, synthetic_train: {size: -1}}\n"
        + RUN,
        "bad.yaml: task.synthetic_train.size must be >= 1, got -1",
    ),
    "tiny width not a multiple of 4": (
        TASK + "runs: [{name: a, format: cot, train: {tiny_width: 6}}]\n",
        "bad.yaml: runs[0].train.tiny_width must be a multiple of 4, got 6",
    ),
    "shuffle: 'no' (quoted)": (
        TASK + "runs: [{name: a, format: cot, train: {shuffle: 'no'}}]\n",
        "bad.yaml: runs[0].train.shuffle: expected true or false, got 'no' (a string)",
    ),
    "the recipe is a list": ("- 1\n", "bad.yaml: expected a mapping of settings, got [1]"),
}


@pytest.mark.parametrize("case", list(BAD_RECIPES))
def test_a_malformed_recipe_is_one_line_naming_key_and_value(tmp_path, case):
    text, message = BAD_RECIPES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize(
    "case", ["quoted diverse_samples", "learning_rate: fast", "teacher samples 0", "no runs"]
)
def test_rtdemo_pipeline_refuses_a_malformed_recipe_with_exit_status_2(run_cli, tmp_path, case):
    text, message = BAD_RECIPES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    done = run_cli("pipeline", "--config", path, "--workspace", tmp_path / "ws")
    assert done.returncode == 2, done.stderr
    assert _one_line(done.stderr).startswith(f"error: {message}")
    assert not (tmp_path / "ws" / "experiments").exists()  # nothing started


def test_every_shipped_recipe_still_loads_with_its_keys():

    configs = Path(__file__).resolve().parents[2] / "configs"
    for path in configs.glob("*.yaml"):
        if path.name != "prices.yaml":
            config = load_config(path)
            assert config.runs and isinstance(config.teacher, TeacherSpec)
            assert isinstance(config.teacher, GenerationSettings)


def test_the_recipe_teacher_is_a_teacher_spec_and_sampling_settings(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        TASK + RUN + "teacher: {kind: replay, replay_files: [a.jsonl], samples: 3, "
        "temperature: 0.7, timeout: 5}\n"
    )
    teacher = load_config(path).teacher
    assert teacher.spec() == TeacherSpec(kind="replay", replay_files=(Path("a.jsonl"),), timeout=5)
    assert teacher.sampling(samples=1) == GenerationSettings(samples=1, temperature=0.7)


# The command line -----------------------------------------------------------------------------

TRAIN = ("train", "--experiment", "e", "--run", "r", "--format", "cot")
GENERATE = ("generate", "--experiment", "e", "--task", "coin_flip", "--source", "synthetic")

BAD_FLAGS = {
    "learning rate fast": (
        [*TRAIN, "--learning-rate", "fast"],
        "error: --learning-rate: expected a number, got 'fast'",
    ),
    "old --lr spelling, checked alike": (
        [*TRAIN, "--lr", "fast"],
        "error: --lr: expected a number, got 'fast'",
    ),
    "max steps 0": ([*TRAIN, "--max-steps", "0"], "error: --max-steps must be >= 1, got 0"),
    "batch size -1": (
        [*TRAIN, "--batch-size", "-1"],
        "error: --batch-size must be >= 1, got -1; e.g. 8",
    ),
    "epochs 0": ([*TRAIN, "--epochs", "0"], "error: --epochs must be > 0, got 0"),
    "diverse samples 0": (
        [*TRAIN, "--diverse-samples", "0"],
        "error: --diverse-samples must be >= 1, got 0",
    ),
    "val fraction 0.9": (
        [*TRAIN, "--val-fraction", "0.9"],
        "error: --val-fraction must be <= 0.5, got 0.9",
    ),
    "method qlora": ([*TRAIN, "--method", "qlora"], "error: --method: invalid choice: 'qlora'"),
    "samples 0": ([*GENERATE, "--samples", "0"], "error: --samples must be >= 1, got 0"),
    "temperature -1": (
        [*GENERATE, "--temperature", "-1"],
        "error: --temperature must be >= 0, got -1",
    ),
    "temperature hot": (
        [*GENERATE, "--temperature", "hot"],
        "error: --temperature: expected a number, got 'hot'",
    ),
    "max tokens 2.5": (
        [*GENERATE, "--max-tokens", "2.5"],
        "error: --max-tokens: expected an integer, got '2.5'",
    ),
    "concurrency 0": ([*GENERATE, "--concurrency", "0"], "error: --concurrency must be >= 1"),
    "budget -5": ([*GENERATE, "--budget", "-5"], "error: --budget must be >= 0, got -5"),
    "error rate 2": ([*GENERATE, "--error-rate", "2"], "error: --error-rate must be <= 1, got 2"),
    "a missing flag": (
        ["train", "--run", "r"],
        "error: the following arguments are required: --experiment, --format",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_a_bad_flag_is_one_line_naming_flag_and_value_with_exit_status_2(run_cli, tmp_path, case):
    argv, message = BAD_FLAGS[case]
    done = run_cli(*argv, "--workspace", tmp_path / "ws")
    assert done.returncode == 2, done.stderr
    assert _one_line(done.stderr).startswith(message)
    assert not (tmp_path / "ws").exists()  # refused as the flags were read


def test_diverse_samples_at_temperature_0_is_refused_on_the_command_line(run_cli, tmp_path):
    done = run_cli(*GENERATE, "--samples", "4", "--workspace", tmp_path / "ws")
    assert done.returncode == 2
    assert "4 diverse samples at temperature 0 would all be the same" in _one_line(done.stderr)


def test_renamed_flags_keep_their_old_spelling_hidden():
    from rtdemo.cli.main import build_parser

    parser = build_parser()
    new = parser.parse_args([*TRAIN, "--learning-rate", "1e-3", "--diverse-samples", "2"])
    old = parser.parse_args([*TRAIN, "--lr", "1e-3", "--samples-per-question", "2"])
    for args in (new, old):
        assert (args.learning_rate, args.diverse_samples) == (1e-3, 2)
    train = parser._subparsers._group_actions[0].choices["train"]
    text = train.format_help()
    assert "--learning-rate" in text and "--diverse-samples" in text
    assert "--lr " not in text and "--samples-per-question" not in text
    # The help texts come from the fields' one definition.
    assert "peak learning rate" in text and "D: use the first D samples" in text


# The app: the tabs build settings through the same definitions --------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": "fast"}, "learning_rate: expected a number, got 'fast'"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0; e.g. 8"),
        ({"max_steps": 2.5}, "max_steps: expected an integer, got 2.5"),
        ({"steps": 3}, "unknown key 'steps' (did you mean max_steps?)"),
        ({"method": "qlora"}, "method must be 'lora' or 'full', got 'qlora'"),
    ],
)
def test_the_train_tab_settings_are_checked_by_the_same_definition(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)) as err:
        settings_for("tiny", "tiny", overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"samples": "2"}, "samples: expected an integer, got '2' (a string)"),
        ({"samples": 0}, "samples must be >= 1, got 0"),
        ({"temperature": -0.5}, "temperature must be >= 0, got -0.5"),
        ({"samples": 3}, "3 diverse samples at temperature 0 would all be the same"),
        ({"max_token": 64}, "unknown key 'max_token' (did you mean max_tokens?)"),
    ],
)
def test_the_teacher_tab_settings_are_checked_by_the_same_definition(values, message):
    with pytest.raises(UserError, match=re.escape(message)):
        from_data(GenerationSettings, values, "sampling")


def test_settings_built_in_python_are_checked_against_the_declared_ranges():
    with pytest.raises(UserError, match=r"^error_rate must be <= 1, got 1\.5$"):
        TeacherSpec(error_rate=1.5)
    with pytest.raises(UserError, match="bad training settings: lora_dropout must be < 1"):
        TrainSettings(student="tiny", lora_dropout=1.0)
    assert check_values(TrainSettings, {"max_steps": None, "epochs": 3}) == {
        "max_steps": None,
        "epochs": 3.0,
    }
