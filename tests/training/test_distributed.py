"""Multi-process (data-parallel) training: `rtdemo train --processes 2` on two CPU processes
(CPU also on a GPU machine: the subprocesses get `CUDA_VISIBLE_DEVICES=""`).

The equality test runs the real CLI twice on the same 16 vanilla records of mixed length, in order
(`--no-shuffle`), fp32, AdamW at the paper's 3e-4 for 4 steps, with a tiny GPT-2 whose dropout is
off: once in one process with batch 8, once through torchrun in two gloo processes with 4 examples
each. The weights must agree to 1e-5 (they differ by ~1e-7; with the loss averaged per process
instead of over the tokens of both, they differ by ~1e-3).

Why they agree although the two halves of a batch hold different numbers of completion tokens:
the trainer counts the label tokens of the whole global batch (`num_items_in_batch`, gathered
across processes since `average_tokens_across_devices` is on by default), each process divides the
summed token loss of its half by that global count and multiplies by the number of processes, and
DDP averages the gradients: the result is the single process's mean over all tokens of the batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rtdemo.training import launch
from tests.conftest import REPO

EXPERIMENT = "ddp"
STEPS = 4
TIMEOUT_S = 150


def run(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """`python -m rtdemo ...` in its own session; on a timeout the whole session is killed (the
    launcher with it; its workers end when their launcher dies)."""
    # No GPU for these runs, also on a GPU machine: the tests compare gloo on CPU processes
    # with one CPU process (two workers sharing one GPU would not run under NCCL at all).
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "",
    }  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "rtdemo", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, "")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """(workspace with 16 last-letter questions of 1-4 words, student folder without dropout)."""
    from rtdemo.students.loading import build_tiny_student

    root = tmp_path_factory.mktemp("distributed")
    student = build_tiny_student(root / "student", layers=2, width=32, heads=2, context=256)
    config = json.loads((student / "config.json").read_text())
    for name in ("attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_first_dropout"):
        config[name] = 0.0
    (student / "config.json").write_text(json.dumps(config, indent=2))
    workspace = root / "workspace"
    created = run(
        "experiments", "create", EXPERIMENT, "--task", "last_letter_concatenation",
        "--source", "synthetic", "--size", "40", "--min-length", "1", "--length", "4",
        "--limit", "16", "--splits", "train", "--workspace", workspace,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout
    return workspace, student


def train_args(workspace: Path, student: Path, run_name: str, *extra: str) -> list[str]:
    return [
        "train", "--experiment", EXPERIMENT, "--run", run_name, "--format", "vanilla",
        "--student", student, "--recipe", "paper", "--method", "full",
        "--max-steps", str(STEPS), "--batch-size", "8", "--precision", "fp32", "--no-shuffle",
        "--workspace", workspace, *extra,
    ]  # fmt: skip


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def label_counts(workspace: Path, student: Path) -> list[int]:
    """Completion tokens (the trained ones, EOS aside) of each record, in training order."""
    from transformers import AutoTokenizer

    from rtdemo.curation.curate import format_pair
    from rtdemo.workspace.store import Store

    tokenizer = AutoTokenizer.from_pretrained(student)
    with Store(workspace) as store:
        questions = store.questions(store.get_experiment(EXPERIMENT).id, "train")
    records = [format_pair(q.question, "", q.answer, "vanilla", "causal") for q in questions]
    return [len(tokenizer(r["completion"])["input_ids"]) for r in records]


def test_launcher_command_and_worker_arguments():
    argv = launch.launcher_argv(2, ["train", "--run", "x"])
    assert argv[:8] == [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "-m", "--",
    ]  # fmt: skip
    assert argv[8:] == ["rtdemo", "train", "--run", "x"]
    worker = launch.worker_argv(["train", "--run", "x", "--job-id", "7", "--background"], Path("w"))
    assert worker == ["train", "--run", "x", "--workspace", "w"]
    assert launch.threads_per_process(2) >= 1


def test_one_process_by_default_unless_there_are_several_gpus(monkeypatch):
    import torch

    # CUDA's answers are stubbed: the rule is tested the same on CPU and GPU machines.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert launch.device_count() == 0 and launch.default_processes() == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert launch.device_count() == 1 and launch.default_processes() == 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert launch.device_count() == 4 and launch.default_processes() == 4


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_training(setup):
    workspace, student = setup
    args = train_args(workspace, student, "odd", "--processes", "2")
    args[args.index("--batch-size") + 1] = "7"
    result = run(*args, timeout=60)
    assert result.returncode == 2, result.stdout
    assert "multiple of 2" in result.stdout
    assert "torch.distributed" not in result.stdout  # nothing was launched


@pytest.mark.slow
def test_two_gloo_processes_train_the_same_weights_as_one(setup):
    workspace, student = setup
    single = run(*train_args(workspace, student, "single"))
    assert single.returncode == 0, single.stdout
    ddp = run(*train_args(workspace, student, "ddp", "--processes", "2"))
    assert ddp.returncode == 0, ddp.stdout
    assert "process 0 of 2 (gloo)" in ddp.stdout  # the Trainer took gloo on this CPU machine
    assert "4 examples per process and step" in ddp.stdout

    runs = workspace / "runs" / "students" / f"1-{EXPERIMENT}"
    one = json.loads((runs / "single" / "train_result.json").read_text())
    two = json.loads((runs / "ddp" / "train_result.json").read_text())
    assert one["global_step"] == two["global_step"] == STEPS
    assert not two["stopped"]
    assert (one["settings"]["batch_size"], two["settings"]["batch_size"]) == (8, 4)
    # Process 0 alone wrote progress: one line per step, not two.
    assert ddp.stdout.count(f"step {STEPS}/{STEPS},") == 1

    # The halves of each global batch differ in trained tokens: equal weights are not an accident
    # of equal lengths (see the module docstring).
    counts = label_counts(workspace, student)
    halves = [(sum(counts[i : i + 4]), sum(counts[i + 4 : i + 8])) for i in (0, 8)]
    assert any(a != b for a, b in halves), halves

    initial = weights(student)
    trained_one, trained_two = weights(runs / "single" / "final"), weights(runs / "ddp" / "final")
    assert max_difference(trained_one, initial) > 1e-4  # training moved the weights
    assert max_difference(trained_one, trained_two) < 1e-5

    from rtdemo.training.runs import get_run
    from rtdemo.workspace.store import Store

    with Store(workspace) as store:
        recorded = get_run(store, store.get_experiment(EXPERIMENT), "ddp")
    assert recorded.status == "trained"
    assert recorded.result["processes"] == 2
