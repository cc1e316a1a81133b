"""SmolLM2 as the student on this CPU: training tokens/s and peak memory, LoRA and full, fp32 and
bf16; evaluation examples/s, batched against one at a time.

Run from the repository root (results also go to benchmarks/README.md by hand):

    .venv/bin/python benchmarks/smollm2_student.py
    .venv/bin/python benchmarks/smollm2_student.py --steps 3 --warmup-steps 1 --threads 2 \
        --json /tmp/smollm2_student.json

The student is `--model` (default `smollm2-135m`: the dequantized fp32 copy of
HuggingFaceTB/SmolLM2-135M-Instruct that `rtdemo models prepare smollm2-135m` makes), loaded with
`rtdemo.students.loading.load_student` as training and evaluation load it. Everything runs on the
CPU (the children get `CUDA_VISIBLE_DEVICES=""`).

Data: `--questions` Last Letter Concatenation questions of 2-4 words with the built-in teacher's
greedy rationales, answer-filtered, in the Fine-tune-CoT format (`benchmarks.training_throughput.
last_letter_records`, the same data as the tiny student's training benchmark); their length in the
student's tokens (prompt + completion + EOS) is reported.

Training: the project's trainer (`rtdemo.training.trainer.build_trainer`: TRL's `SFTTrainer`,
completion-only loss, length-grouped batches, no checkpoints) with the `small` recipe
(`rtdemo.training.settings.SMALL_RECIPE`: LoRA r 16 on every linear layer, lr 1e-3, batch 8, at
most 256 tokens, fp32). Variants:

1. **lora-fp32**: the recipe as it is: the baseline every ratio is taken against;
2. **full-fp32**: `method="full"`, lr 5e-5;
3. **lora-bf16**, **full-bf16**: the same in bf16 autocast (the weights stay fp32), run only where
   the processor has fast bf16 (AVX512-BF16 or AMX: `choose_precision("auto")` would pick bf16),
   or with `--bf16` anyway.

Each variant runs in a fresh Python process, one after the other: libraries imported, student
loaded and every weight read once (the weights are memory-mapped from the safetensors file, and
pages not yet read are not resident: resident memory "after load" includes them), peak reset
(`/proc/self/clear_refs`, as `training_memory.py`), trainer built, `--warmup-steps` untimed
steps, then `--steps` timed ones.
Figures: non-padding tokens per second over the timed steps (each step's collated batch counted by
its attention mask; a step runs forward, backward and the optimizer), seconds per step, peak
resident memory above the loaded student (`VmHWM`), trainable parameters, the loss of the first
and last step (the same batches in the same order for every variant: seed 0), and CPU time over
wall time (below 90 % of the threads: the cores were shared, and the run is flagged `contended`).

Evaluation: in this process, after the training children: the student `--eval-model` (default:
`--model`, untrained: it has not learnt the format, so its answers mostly run to the cap, the
long-answer case; give a trained run's `final/` to measure answers that stop) answers
`--eval-prompts` four-word test questions (seed 1) greedily with `rtdemo.evaluation.evaluate.
generate`, `--max-new-tokens` each, fp32, at batch 1 and at `--eval-batch-size` (the evaluation's
default, 16); examples/s, new tokens/s, the ratio to batch 1. The benchmark fails unless both
give exactly the same answers.
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

from benchmarks.evaluation_batching import question_prompts  # noqa: E402
from benchmarks.machine import contended, machine_info, usable_cores  # noqa: E402
from benchmarks.training_memory import _reset_peak, _status_kib  # noqa: E402
from benchmarks.training_throughput import last_letter_records  # noqa: E402

VARIANTS = ("lora-fp32", "full-fp32", "lora-bf16", "full-bf16")
BASELINE = "lora-fp32"
# Full fine-tuning of a pretrained 135M model: the recipe's 1e-3 is for LoRA.
FULL_LEARNING_RATE = 5e-5


def child(
    variant: str, model: str, questions: int, batch_size: int, warmup: int, steps: int, threads: int
) -> dict[str, Any]:
    """One training variant in this (fresh) process: load, measure, train, measure."""
    import datasets  # noqa: F401 — imported before the first reading, as everything else
    import peft  # noqa: F401
    import torch
    import transformers
    import trl  # noqa: F401
    from transformers import TrainerCallback

    from rtdemo.students.loading import load_student
    from rtdemo.training.recipes import settings_for
    from rtdemo.training.trainer import _quiet_libraries, build_trainer

    _quiet_libraries()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    method, precision = variant.split("-")
    overrides: dict[str, Any] = {
        "method": method,
        "batch_size": batch_size,
        "max_steps": warmup + steps,
        "save_every_epoch": False,
        "logging_steps": 1,
        "precision": precision,
    }
    if method == "full":
        overrides["learning_rate"] = FULL_LEARNING_RATE
    settings = settings_for(model, "small", overrides)
    records, _ = last_letter_records(questions)
    rss_start = _status_kib("VmRSS")
    torch.manual_seed(0)
    student, tokenizer, kind = load_student(model, for_training=True)
    parameters = sum(p.numel() for p in student.parameters())
    with torch.no_grad():  # safetensors are memory-mapped: read every weight once, so that it
        for param in student.parameters():  # is resident and counted "after load"
            param.sum()
    rss_loaded = _status_kib("VmRSS")
    reset = _reset_peak()
    lengths = [len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) + 1 for r in records]
    tokens: list[int] = []
    step_seconds: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_seconds.append(time.perf_counter() - self.t)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory(prefix="rtdemo-bench-") as tmp:
        trainer = build_trainer(
            student, tokenizer, kind, records, settings, Path(tmp) / "out",
            precision=precision, callbacks=[Clock()],
        )  # fmt: skip
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        collate = trainer.data_collator

        def counting(features):
            batch = collate(features)
            tokens.append(int(batch["attention_mask"].sum()))
            return batch

        trainer.data_collator = counting
        cpu0, wall0 = time.process_time(), time.perf_counter()
        trainer.train()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        done = trainer.state.global_step
    peak = _status_kib("VmHWM")
    if done != warmup + steps or len(step_seconds) != done or len(tokens) < done:
        raise RuntimeError(
            f"{variant}: {done} steps, {len(step_seconds)} timed, {len(tokens)} batches"
        )
    timed_seconds = sum(step_seconds[warmup:])
    timed_tokens = sum(tokens[warmup:done])
    return {
        "variant": variant,
        "method": method,
        "precision": precision,
        "model_parameters": parameters,
        "trainable_parameters": trainable,
        "examples": len(records),
        "tokens_per_example": {
            "min": min(lengths),
            "mean": sum(lengths) / len(lengths),
            "max": max(lengths),
        },
        "steps": done,
        "timed_steps": steps,
        "timed_tokens": timed_tokens,
        "tokens_per_s": timed_tokens / timed_seconds,
        "seconds_per_step": timed_seconds / steps,
        "step_seconds": step_seconds,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "losses": losses,
        "cpu_per_wall": cpu / wall,
        "rss_before_model_mib": rss_start / 1024,
        "rss_after_load_mib": rss_loaded / 1024,
        "peak_reset_after_load": reset,
        "peak_mib": peak / 1024,
        "peak_minus_load_mib": (peak - rss_loaded) / 1024,
    }


def run_child(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """`child(...)` in a fresh interpreter, on the CPU."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", variant, "--model", args.model,
        "--questions", str(args.questions), "--batch-size", str(args.batch_size),
        "--warmup-steps", str(args.warmup_steps), "--steps", str(args.steps),
        "--threads", str(args.threads),
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env=env, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {variant} child failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["contended"] = contended(figures["cpu_per_wall"], args.threads)
    figures["rusage_children_maxrss_mib"] = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    )
    return figures


def evaluation(
    model: str, prompts: int, batch_size: int, max_new_tokens: int, threads: int
) -> dict[str, Any]:
    """Greedy answers at batch 1 and at `batch_size`, timed; they must be identical."""
    import torch
    import transformers

    from rtdemo.evaluation.evaluate import generate
    from rtdemo.students.loading import load_student

    transformers.utils.logging.disable_progress_bar()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        student, tokenizer, kind = load_student(model, for_training=False, device="cpu")
        texts = question_prompts(prompts)
        runs = {}
        answers = {}
        for size in (1, batch_size):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            answers[size] = generate(
                student, tokenizer, kind, texts, batch_size=size, max_new_tokens=max_new_tokens
            )
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            new_tokens = sum(a.new_tokens for a in answers[size])
            runs[str(size)] = {
                "seconds": wall,
                "examples_per_s": prompts / wall,
                "new_tokens_per_s": new_tokens / wall,
                "cpu_per_wall": cpu / wall,
                "contended": contended(cpu / wall, threads),
            }
    finally:
        torch.set_num_threads(before)
    if answers[1] != answers[batch_size]:
        differ = sum(a != b for a, b in zip(answers[1], answers[batch_size], strict=True))
        raise RuntimeError(f"batch {batch_size} answered {differ} of {prompts} prompts differently")
    for figures in runs.values():
        figures["ratio_to_batch_1"] = figures["examples_per_s"] / runs["1"]["examples_per_s"]
    stopped = sum(a.finish_reason == "stop" for a in answers[1])
    return {
        "model": model,
        "prompts": prompts,
        "max_new_tokens": max_new_tokens,
        "batch_sizes": runs,
        "identical_to_batch_1": True,
        "answers": {
            "new_tokens_total": sum(a.new_tokens for a in answers[1]),
            "stopped_at_eos": stopped,
            "first": answers[1][0].text,
        },
    }


def cpu_has_fast_bf16() -> bool:
    from rtdemo.training.settings import _cpu_has_fast_bf16

    return _cpu_has_fast_bf16()


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every training variant in its own process, then the evaluation; every figure."""
    machine = machine_info(args.threads)  # the load average before the runs
    machine["fast_bf16"] = cpu_has_fast_bf16()
    wanted = [v for v in VARIANTS if v.endswith("fp32") or machine["fast_bf16"] or args.bf16]
    if args.variants:
        wanted = [v for v in VARIANTS if v in args.variants]
    if BASELINE not in wanted:
        wanted.insert(0, BASELINE)
    variants = {v: run_child(v, args) for v in wanted}
    base = variants[BASELINE]
    for figures in variants.values():
        figures["tokens_per_s_vs_baseline"] = figures["tokens_per_s"] / base["tokens_per_s"]
        figures["peak_minus_load_vs_baseline"] = (
            figures["peak_minus_load_mib"] / base["peak_minus_load_mib"]
            if base["peak_minus_load_mib"] > 0
            else None
        )
    eval_model = args.eval_model or args.model
    evaluated = evaluation(
        eval_model, args.eval_prompts, args.eval_batch_size, args.max_new_tokens, args.threads
    )
    return {
        "benchmark": "smollm2_student",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "parameters": {
            "model": args.model,
            "recipe": "small (LoRA r 16, alpha 32, all-linear, lr 1e-3; full: lr "
            f"{FULL_LEARNING_RATE:g}; max length 256, AdamW, cosine, 5 % warm-up)",
            "batch_size": args.batch_size,
            "questions": args.questions,
            "warmup_steps": args.warmup_steps,
            "timed_steps": args.steps,
            "threads": args.threads,
            "baseline": BASELINE,
        },
        "variants": variants,
        "evaluation": evaluated,
    }


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small text table."""
    p, m = result["parameters"], result["machine"]
    first = next(iter(result["variants"].values()))
    t = first["tokens_per_example"]
    lines = [
        f"SmolLM2 student — {result['date']}",
        f"{m['cpu']}, {m['cores']} cores, fast bf16: {m['fast_bf16']}, torch {m.get('torch')} "
        f"with {p['threads']} thread(s), Python {m['python']}",
        f"{p['model']}: {first['model_parameters'] / 1e6:.1f}M parameters; {first['examples']} "
        f"examples of {t['min']}-{t['max']} tokens (mean {t['mean']:.0f}), batch "
        f"{p['batch_size']}, {p['warmup_steps']} untimed + {p['timed_steps']} timed steps",
        "",
        "variant     trainable   tokens/s  vs base  s/step  peak-load MiB  vs base  "
        "loss first→last",
    ]
    for name, v in result["variants"].items():
        mem_ratio = v["peak_minus_load_vs_baseline"]
        loss = (
            f"{v['first_loss']:.3f} → {v['last_loss']:.3f}" if v["first_loss"] is not None else "—"
        )
        lines.append(
            f"{name:<10} {v['trainable_parameters'] / 1e6:>8.2f}M {v['tokens_per_s']:>10.1f} "
            f"{v['tokens_per_s_vs_baseline']:>7.2f}× {v['seconds_per_step']:>7.2f} "
            f"{v['peak_minus_load_mib']:>13.0f} "
            + (f"{mem_ratio:>7.2f}×" if mem_ratio is not None else "      —")
            + f"  {loss}"
            + ("  (contended)" if v["contended"] else "")
        )
    e = result["evaluation"]
    lines += [
        "",
        f"evaluation ({e['model']}): {e['prompts']} prompts, at most {e['max_new_tokens']} new "
        f"tokens, {e['answers']['stopped_at_eos']} stopped at EOS, identical at every batch size",
    ]
    for size, figures in e["batch_sizes"].items():
        lines.append(
            f"  batch size {size:>3}: {figures['examples_per_s']:.2f} examples/s, "
            f"{figures['new_tokens_per_s']:.1f} new tokens/s, "
            f"{figures['ratio_to_batch_1']:.2f}× batch 1"
            + ("  (contended)" if figures["contended"] else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, run the benchmark, print the table, write JSON if asked; return figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--model", default="smollm2-135m", help="the student (default: %(default)s)"
    )
    parser.add_argument("--questions", type=int, default=64, help="training questions")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per step (recipe: 8)")
    parser.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="torch threads")
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, help="only these (lora-fp32 always runs)"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 variants without fast bf16 too")
    parser.add_argument("--eval-model", help="the evaluated student (default: --model)")
    parser.add_argument("--eval-prompts", type=int, default=16, help="evaluation prompts")
    parser.add_argument("--eval-batch-size", type=int, default=16, help="batched evaluation")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="per evaluation answer")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    counts = (args.questions, args.batch_size, args.steps, args.threads, args.eval_prompts)
    if (
        min(counts) < 1
        or args.warmup_steps < 0
        or min(args.eval_batch_size, args.max_new_tokens) < 1
    ):
        parser.error("every count must be >= 1 (--warmup-steps >= 0)")
    if args.child:
        figures = child(
            args.child, args.model, args.questions, args.batch_size, args.warmup_steps,
            args.steps, args.threads,
        )  # fmt: skip
        print(json.dumps(figures))
        return figures
    result = benchmark(args)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
