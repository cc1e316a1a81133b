"""Training memory: LoRA against full fine-tuning of a GPT-2-small-sized student.

Run from the repository root (results also go to benchmarks/README.md by hand):

    .venv/bin/python benchmarks/training_memory.py
    .venv/bin/python benchmarks/training_memory.py --steps 3 --batch-size 2 --tokens 128 \
        --repeats 3 --threads 2 --json /tmp/training_memory.json

The model is GPT-2 small's architecture from `transformers.GPT2Config()` defaults (12 layers,
width 768, 12 heads, 50,257-token vocabulary, 124M parameters), random weights (seed 0), built in
memory: nothing is downloaded. The tokenizer is the tiny student's byte tokenizer
(`rtdemo.students.loading.byte_tokenizer`, no files); its ids are a subset of the model's
vocabulary. Data: Last Letter Concatenation Fine-tune-CoT records from the built-in teacher, cut to
`--tokens` tokens each (all of them are longer), so every batch is `--batch-size` × `--tokens`
(with a small `--tokens`, prompts longer than `--tokens` - 16 keep only their end, so that
completions remain).

Each variant is trained for `--steps` steps by the project's trainer (`rtdemo.training.trainer.
build_trainer`, `PAPER_RECIPE`: AdamW, lr 3e-4, the precision the recipe picks on this machine,
no checkpoints), each run in a fresh Python process of its own, `--repeats` runs per variant
(interleaved; the run with the median figure is reported):

1. **lora**: `method="lora"` (the project's adapter: r 16, alpha 32, dropout 0.05,
   `target_modules="all-linear"`);
2. **full**: `method="full"`.

In the child process, after every library is imported and the model is built, the resident memory
is read (`VmRSS`, "after load"); the peak is then reset (`echo 5 > /proc/self/clear_refs`, Linux)
so that the peak read after training (`VmHWM`) is the training's own, trainer construction and
data preparation included. Figure: peak minus after-load for each variant, and full / LoRA. Also
recorded: the peak before the reset (building the model), the trainable parameters, seconds per
step (not a figure of this benchmark: the runs are short and not warmed up), and, as a
cross-check, the parent's `getrusage(RUSAGE_CHILDREN).ru_maxrss` after each child (a running
maximum over the children: exact for the first one only). `--threads` sets `torch.set_num_threads`
in the children (default: the usable cores); memory hardly depends on it.

Resident memory is what the allocator keeps, not only what tensors hold. glibc's malloc raises its
mmap threshold as large blocks are freed, so later activation buffers come from the heap and stay
resident after they are freed. `--mmap-threshold BYTES` is a diagnostic: it runs the children with
`MALLOC_MMAP_THRESHOLD_=BYTES` (a fixed threshold: large blocks are mmapped and returned on free),
which shows how much of a figure is the allocator's retention.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: rtdemo importable
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import machine_info, usable_cores  # noqa: E402
from benchmarks.training_throughput import last_letter_records  # noqa: E402

VARIANTS = ("lora", "full")
MIB = 1024 * 1024


def _status_kib(field: str) -> int:
    """A `VmXXX:` line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current value (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(variant: str, steps: int, batch_size: int, tokens: int, threads: int) -> dict[str, Any]:
    """One variant in this (fresh) process: build, measure, train, measure."""
    import datasets  # noqa: F401 — imported before the first reading, as everything else
    import peft  # noqa: F401
    import torch
    import transformers
    import trl  # noqa: F401
    from transformers import AutoModelForCausalLM, GPT2Config, TrainerCallback

    from rtdemo.students.loading import byte_tokenizer
    from rtdemo.training.settings import PAPER_RECIPE, TrainSettings, choose_precision
    from rtdemo.training.trainer import _quiet_libraries, build_trainer

    _quiet_libraries()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    records, _ = last_letter_records(max(64, batch_size * steps))
    # Every example must keep completion tokens after the cut to `tokens` (the trainer drops the
    # others): a prompt longer than `tokens - 16` bytes keeps only its end (short --tokens only).
    keep = max(4, tokens - 16)
    records = [{**r, "prompt": r["prompt"][-keep:]} for r in records]
    tokenizer = byte_tokenizer()
    settings = TrainSettings(
        **{
            **PAPER_RECIPE,
            "student": "GPT2Config() from config",
            "method": variant,
            "batch_size": batch_size,
            "max_steps": steps,
            "max_length": tokens,
            "save_every_epoch": False,
            "logging_steps": 1,
        }
    )
    precision = choose_precision(settings.precision)
    rss_start = _status_kib("VmRSS")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config())
    parameters = sum(p.numel() for p in model.parameters())
    rss_loaded = _status_kib("VmRSS")
    peak_loading = _status_kib("VmHWM")
    reset = _reset_peak()
    shapes: list[tuple[int, ...]] = []
    step_seconds: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_seconds.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory(prefix="rtdemo-bench-") as tmp:
        trainer = build_trainer(
            model, tokenizer, "causal", records, settings, Path(tmp) / "out",
            precision=precision, callbacks=[Clock()],
        )  # fmt: skip
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        rss_built = _status_kib("VmRSS")
        collate = trainer.data_collator

        def recording(features):
            batch = collate(features)
            shapes.append(tuple(batch["input_ids"].shape))
            return batch

        trainer.data_collator = recording
        trainer.train()
        steps_done = trainer.state.global_step
    peak = _status_kib("VmHWM")
    return {
        "variant": variant,
        "precision": precision,
        "model_parameters": parameters,
        "trainable_parameters": trainable,
        "steps": steps_done,
        "batch_shapes": sorted(set(shapes)),
        "median_step_seconds": sorted(step_seconds)[len(step_seconds) // 2],
        "rss_before_model_mib": rss_start / 1024,
        "rss_after_load_mib": rss_loaded / 1024,
        "peak_while_loading_mib": peak_loading / 1024,
        "peak_reset_after_load": reset,
        "rss_after_trainer_built_mib": rss_built / 1024,
        "peak_mib": peak / 1024,
        "peak_minus_load_mib": (peak - rss_loaded) / 1024,
    }


def run_child(
    variant: str,
    steps: int,
    batch_size: int,
    tokens: int,
    threads: int,
    mmap_threshold: int | None = None,
) -> dict:
    """`child(...)` in a fresh interpreter; its figures plus the parent's RUSAGE_CHILDREN view."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", variant, "--steps", str(steps),
        "--batch-size", str(batch_size), "--tokens", str(tokens), "--threads", str(threads),
    ]  # fmt: skip
    env = dict(os.environ)
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {variant} child failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    # ru_maxrss is in KiB on Linux; a running maximum over every child waited for so far.
    figures["rusage_children_maxrss_mib"] = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    )
    return figures


def benchmark(
    steps: int,
    batch_size: int,
    tokens: int,
    threads: int,
    mmap_threshold: int | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """Run each variant `repeats` times, each run in its own process, interleaved; return every
    figure (per variant: the run with the median peak minus load, and every run's figure)."""
    machine = machine_info(threads)  # the load average before the runs
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for v in VARIANTS:
            runs[v].append(run_child(v, steps, batch_size, tokens, threads, mmap_threshold))
    variants = {}
    for v, measured in runs.items():
        ordered = sorted(measured, key=lambda r: r["peak_minus_load_mib"])
        variants[v] = {
            **ordered[(len(ordered) - 1) // 2],
            "peak_minus_load_mib_runs": [r["peak_minus_load_mib"] for r in measured],
        }
    lora, full = variants["lora"], variants["full"]
    return {
        "benchmark": "training_memory",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "parameters": {
            "model": "GPT2Config() defaults, random weights (seed 0)",
            "model_parameters": full["model_parameters"],
            "steps": steps,
            "batch_size": batch_size,
            "tokens_per_example": tokens,
            "precision": full["precision"],
            "recipe": "PAPER_RECIPE (AdamW, lr 3e-4) via rtdemo.training.trainer.build_trainer",
            "lora": "r 16, alpha 32, dropout 0.05, target_modules all-linear",
            "malloc_mmap_threshold": mmap_threshold or "glibc default (dynamic)",
            "repeats": repeats,
        },
        "variants": variants,
        "full_vs_lora": full["peak_minus_load_mib"] / lora["peak_minus_load_mib"],
        "saved_mib": full["peak_minus_load_mib"] - lora["peak_minus_load_mib"],
    }


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small text table."""
    p, m = result["parameters"], result["machine"]
    head = [
        f"training memory — {result['date']}",
        f"{m['cpu']}, {m['cores']} cores, torch {m.get('torch')} with {m['torch_threads']} "
        f"thread(s), Python {m['python']}, {m['platform']}",
        f"{p['model']}, {p['model_parameters'] / 1e6:.1f}M parameters, {p['steps']} steps at "
        f"batch {p['batch_size']} × {p['tokens_per_example']} tokens, {p['precision']}, "
        f"one fresh process per run, median of {p['repeats']}"
        + (
            f", MALLOC_MMAP_THRESHOLD_={p['malloc_mmap_threshold']} (diagnostic)"
            if isinstance(p["malloc_mmap_threshold"], int)
            else ""
        ),
        "",
    ]
    rows = []
    for name in VARIANTS:
        v = result["variants"][name]
        rows.append(
            f"{name:<5} trainable {v['trainable_parameters'] / 1e6:>7.2f}M  after load "
            f"{v['rss_after_load_mib']:>6.0f} MiB  peak {v['peak_mib']:>6.0f} MiB  "
            f"peak - load {v['peak_minus_load_mib']:>6.0f} MiB "
            f"(runs: {', '.join(f'{x:.0f}' for x in v['peak_minus_load_mib_runs'])})"
        )
    tail = [
        "",
        f"full / LoRA (peak - load): {result['full_vs_lora']:.2f}×; LoRA saves "
        f"{result['saved_mib']:.0f} MiB",
    ]
    return "\n".join(head + rows + tail)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, run the benchmark, print the table, write JSON if asked; return figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per variant")
    parser.add_argument("--batch-size", type=int, default=2, help="examples per step")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per example")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="torch threads")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median)")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        help="diagnostic: MALLOC_MMAP_THRESHOLD_ for the children (see the module docstring)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.threads, args.repeats) < 1 or args.tokens < 8:
        parser.error("steps, batch-size, threads and repeats must be >= 1, tokens >= 8")
    if args.child:
        figures = child(args.child, args.steps, args.batch_size, args.tokens, args.threads)
        print(json.dumps(figures))
        return figures
    result = benchmark(
        args.steps, args.batch_size, args.tokens, args.threads, args.mmap_threshold, args.repeats
    )
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
