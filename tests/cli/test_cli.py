"""The CLI as a user runs it: real subprocesses, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtdemo.cli.main import build_parser
from rtdemo.tasks import TASKS


def test_tasks_json_lists_all_twelve_with_availability(run_cli):
    out = run_cli("tasks", "--json")
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert [r["key"] for r in records] == list(TASKS)
    by_key = {r["key"]: r for r in records}
    assert by_key["coin_flip"]["sources"]["synthetic"]["available"] is True
    assert by_key["gsm8k"]["sources"]["paper"]["available"] is False
    assert "needs network or a local copy" in by_key["gsm8k"]["sources"]["hub"]["reason"]
    assert by_key["aqua"]["answer_type"] == "letter" and by_key["aqua"]["letters"] == "ABCDE"


def test_tasks_table_with_paper_data(run_cli, paper_data):
    out = run_cli("tasks", env={"RTDEMO_PAPER_DATA": str(paper_data)})
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("svamp"))
    assert "paper✔" in line and "700/300" in line


def test_tasks_show_json_lines(run_cli, paper_data):
    out = run_cli(
        "tasks",
        "show",
        "multiarith",
        "--split",
        "test",
        "--limit",
        "5",
        "--json",
        "--paper-data",
        paper_data,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 5
    assert all(set(r) >= {"question", "answer", "split"} and r["split"] == "test" for r in rows)


def test_tasks_show_synthetic_with_no_data_folder(run_cli):
    out = run_cli(
        "tasks",
        "show",
        "last_letter_concatenation",
        "--json",
        "--size",
        "20",
        "--length",
        "6",
        "--seed",
        "7",
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 14  # 70 % of 20
    assert all(len(r["answer"]) == 6 for r in rows)


def test_tasks_show_user_file_with_column_mapping(run_cli, tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text("q,a,split\nIs it?,Yes,test\nIs it not?,no,train\n")
    out = run_cli(
        "tasks",
        "show",
        "strategy_qa",
        "--source",
        "file",
        "--file",
        f,
        "--question-column",
        "q",
        "--answer-column",
        "a",
        "--split",
        "test",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(x)["answer"] for x in out.stdout.splitlines()] == ["yes"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tasks", "show", "nope"], "unknown task 'nope'"),
        (["tasks", "show", "gsm8k", "--source", "hub"], "needs network or a local copy"),
        (["tasks", "show", "addsub"], "no source of AddSub"),
        (["tasks", "show", "coin_flip", "--size", "0"], "synthetic size"),
        (["score", "--task", "gsm8k", "--input", "/nonexistent.jsonl"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line_and_status_2(run_cli, args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_malformed_user_file_names_the_row(run_cli, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "a?", "answer": "1"}\n{"question": "b?", "answer": ""}\n')
    out = run_cli("tasks", "show", "gsm8k", "--source", "file", "--file", f)
    assert out.returncode == 2 and "empty answer" in out.stderr
    assert re.search(r"(row|line) 2\b", out.stderr), out.stderr


# (task, format, completion, gold, expected correct, expected prediction) — outputs unseen by the
# implementation's own unit tables.
SCORE_CASES = [
    ("gsm8k", "cot", " She has 3 * 4 = 12 eggs. --> 1,212", "1212", True, "1212"),
    ("gsm8k", "cot", " 6 + 6 = 12 so the answer is 12", "12", True, "12"),
    ("gsm8k", "vanilla", " 11", "12", False, "11"),
    ("gsm8k", "teacher", " $12.00.", "12", True, "12.00"),
    ("aqua", "teacher", " (E) 23", "E", True, "E"),
    ("aqua", "cot", " Compute (A) first --> (d)", "D", False, None),
    ("strategy_qa", "teacher", ' "No."', "No", True, "no"),
    ("coin_flip", "cot", " Two flips. --> yes", "yes", True, "yes"),
    ("last_letter_concatenation", "cot", ' "Ada" ends in "a" --> a n', "an", True, "an"),
    ("date_understanding", "vanilla", " F", "F", True, "F"),
]


def test_score_gives_the_papers_verdicts_in_all_three_formats(run_cli, tmp_path):
    for task, fmt, completion, gold, correct, prediction in SCORE_CASES:
        f = tmp_path / f"{task}-{fmt}.jsonl"
        f.write_text(
            json.dumps({"completion": completion, "answer": gold, "finish_reason": "stop"})
        )
        out = run_cli("score", "--task", task, "--input", f, "--format", fmt, "--json")
        assert out.returncode == 0, out.stderr
        [verdict] = [json.loads(x) for x in out.stdout.splitlines()]
        assert (verdict["correct"], verdict["prediction"]) == (correct, prediction), (task, fmt)


def test_score_metrics_and_order(run_cli, tmp_path):
    f = tmp_path / "preds.jsonl"
    lines = [
        {"completion": " r --> 5", "answer": "5", "finish_reason": "stop"},
        {"completion": " r 5 then", "answer": "5", "finish_reason": "length"},
        {"completion": " r --> 4", "answer": "5"},
        {"completion": "", "answer": "5"},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = run_cli("score", "--task", "multiarith", "--input", f, "--json")
    verdicts = [json.loads(x) for x in out.stdout.splitlines()]
    assert [v["correct"] for v in verdicts] == [True, True, False, False]
    assert json.loads(out.stderr)["metrics"]["accuracy"] == 0.5
    text = run_cli("score", "--task", "multiarith", "--input", f).stdout
    assert "accuracy         50.00%" in text
    assert "correct format   50.00%" in text
    assert "complete         50.00%" in text


def test_score_reports_every_malformed_line(run_cli, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"completion": "1"}\nnot json\n[1]\n{"completion": "1", "answer": "1"}\n')
    out = run_cli("score", "--task", "gsm8k", "--input", f)
    assert out.returncode == 2
    for expected in (
        "line 1: missing answer",
        "line 2: not valid JSON",
        "line 3: not a JSON object",
    ):
        assert expected in out.stderr


def test_experiments_create_and_list(run_cli, tmp_path):
    ws = tmp_path / "ws"
    out = run_cli(
        "experiments", "create", "demo", "--task", "coin_flip", "--size", "40", "--workspace", ws
    )
    assert out.returncode == 0, out.stderr
    assert "40 questions" in out.stdout
    listed = [
        json.loads(x)
        for x in run_cli("experiments", "list", "--json", "--workspace", ws).stdout.splitlines()
    ]
    assert listed[0]["name"] == "demo" and listed[0]["questions"] == 40
    again = run_cli("experiments", "create", "demo", "--task", "coin_flip", "--workspace", ws)
    assert again.returncode == 2 and "demo" in again.stderr


def test_every_command_and_flag_has_help():
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.dest in ("help",):
                continue
            if action.__class__.__name__ == "_SubParsersAction":
                for choice in action._choices_actions:
                    assert choice.help, f"{p.prog}: subcommand {choice.dest} has no help"
                stack.extend(action.choices.values())
                continue
            assert action.help, f"{p.prog}: {action.option_strings or action.dest} has no help"


def console_script() -> str:
    """The installed `rtdemo` console script: beside this interpreter (the venv's bin), else on
    PATH."""
    bin_dir = str(Path(sys.executable).parent)
    script = shutil.which("rtdemo", path=bin_dir) or shutil.which("rtdemo")
    assert script, f"no rtdemo console script in {bin_dir} or on PATH: `pip install -e .`"
    return script


def test_module_and_console_script_agree(run_cli, tmp_path):
    script = console_script()
    cases = [
        ("--help",),
        ("--version",),
        ("tasks", "--json"),
        ("experiments", "show", "nope", "--workspace", str(tmp_path / "ws")),  # a UserError
        ("no-such-command",),  # argparse's error
    ]
    outputs = {}
    for args in cases:
        module = run_cli(*args)
        console = subprocess.run(
            [script, *args],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            cwd=tmp_path,  # not the repository: the installed package, not ./rtdemo
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert (console.returncode, console.stdout, console.stderr) == (
            module.returncode,
            module.stdout,
            module.stderr,
        ), args
        failing = args[0] in ("experiments", "no-such-command")
        assert module.returncode == (2 if failing else 0), (args, module.stderr)
        assert (module.stderr if failing else module.stdout).strip(), args
        outputs[args[0]] = module.stdout
    help_text = outputs["--help"]
    assert help_text.startswith("usage: rtdemo ") and "tasks" in help_text and "score" in help_text


def test_experiments_show_gives_teacher_accuracy_and_yield(run_cli, tmp_path):
    ws = tmp_path / "ws"
    out = run_cli(
        "generate",
        "--task",
        "coin_flip",
        "--limit",
        "6",
        "--samples",
        "3",
        "--temperature",
        "0.7",
        "--error-rate",
        "0.5",
        "--experiment",
        "y",
        "--workspace",
        ws,
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(run_cli("experiments", "show", "y", "--json", "--workspace", ws).stdout)
    assert shown["done"] == 18 and len(shown["questions"]) == 6
    assert shown["kept"] == shown["correct"] == sum(q["correct"] for q in shown["questions"])
    assert 0 < shown["accuracy"] < 1
    text = run_cli("experiments", "show", "y", "--workspace", ws).stdout
    assert "teacher accuracy" in text and "kept after filtering" in text
