"""Evaluation: batched greedy generation against one prompt at a time.

Run from the repository root (results also go to benchmarks/README.md by hand):

    .venv/bin/python benchmarks/evaluation_batching.py
    .venv/bin/python benchmarks/evaluation_batching.py --prompts 64 --batch-sizes 1,16,32 \
        --max-new-tokens 60 --repeats 3 --threads 2 --json /tmp/evaluation_batching.json
    .venv/bin/python benchmarks/evaluation_batching.py --model runs/cot/final   # a trained one

The student is the tiny offline student (`rtdemo.students.loading.build_tiny_student`: 4 layers,
width 128, seed 0) with the word tokenizer built from Fine-tune-CoT training texts of the task (as
`TINY_RECIPE` builds it), **random weights** by default. A random student almost never writes its
end-of-sequence token, so every answer runs to the cap: `--max-new-tokens` (60) new tokens each,
the long-answer case (a trained student's answers are about 40-80 tokens and end at different
lengths, which costs a batch its slowest member; `--model PATH` measures that case).

Prompts: `--prompts` four-word Last Letter Concatenation test questions (seed 1, as the demo's
test split), in the student's training format (`"{q} ###"`). Each batch size is timed on
`rtdemo.evaluation.evaluate.generate(..., batch_size=B)` only (the model is loaded once, before),
greedy, fp32, `--repeats` times, median reported; batch sizes run interleaved. The benchmark checks
that every batch size gives exactly the answers of batch size 1 (text, finish reason and token
count), and fails if not. Figures: examples/s and new tokens/s per batch size, and the ratio to
batch size 1. `--threads` sets `torch.set_num_threads` (default: the usable cores). A run that got
less than 90 % of its threads' cores of CPU time shared them with another process and is left out of
the median (`discarded_runs`; every run's time stays in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: rtdemo importable
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import contended, machine_info, usable_cores  # noqa: E402
from benchmarks.training_throughput import last_letter_records  # noqa: E402
from rtdemo.evaluation.evaluate import generate, student_prompt  # noqa: E402
from rtdemo.students.loading import load_student  # noqa: E402
from rtdemo.tasks.synthetic import SyntheticSettings  # noqa: E402
from rtdemo.tasks.synthetic import generate as synthetic  # noqa: E402


def question_prompts(n: int) -> list[str]:
    """`n` four-word last-letter questions (seed 1, the demo's test questions) as prompts."""
    questions = synthetic("last_letter_concatenation", SyntheticSettings(seed=1, size=n, length=4))
    return [student_prompt(q.question, "causal") for q in questions]


def benchmark(
    n_prompts: int,
    batch_sizes: list[int],
    max_new_tokens: int,
    repeats: int,
    threads: int,
    model_path: Path | None = None,
) -> dict[str, Any]:
    """Time `generate` at every batch size; check the answers agree; return every figure."""
    import torch
    import transformers

    from rtdemo.students.loading import build_tiny_student

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    machine = machine_info(threads)  # the load average before the runs
    sizes = sorted(set([1, *batch_sizes]))
    prompts = question_prompts(n_prompts)
    with tempfile.TemporaryDirectory(prefix="rtdemo-bench-") as tmp:
        if model_path is None:  # the tiny student, random weights, word tokenizer of the task
            records, _ = last_letter_records(1000)
            texts = [r["prompt"] + r["completion"] for r in records]
            folder = build_tiny_student(Path(tmp) / "tiny", texts=texts)
            student = "tiny student, random weights (seed 0), word tokenizer"
        else:
            folder, student = model_path, str(model_path)
        model, tokenizer, kind = load_student(folder, for_training=False, dtype="float32")
    parameters = sum(p.numel() for p in model.parameters())
    prompt_tokens = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    generate(model, tokenizer, kind, prompts[:2], batch_size=2, max_new_tokens=4)  # warm-up
    seconds: dict[int, list[float]] = {b: [] for b in sizes}
    cpu: dict[int, list[float]] = {b: [] for b in sizes}
    answers: dict[int, list] = {}
    for _ in range(repeats):
        for b in sizes:
            start, cpu_start = time.perf_counter(), time.process_time()
            out = generate(
                model, tokenizer, kind, prompts, batch_size=b, max_new_tokens=max_new_tokens
            )
            seconds[b].append(time.perf_counter() - start)
            cpu[b].append((time.process_time() - cpu_start) / seconds[b][-1])
            if b in answers and out != answers[b]:
                raise AssertionError(f"batch size {b} answered differently on a repeat")
            answers[b] = out
    reference = answers[1]
    mismatches = {b: sum(x != y for x, y in zip(answers[b], reference, strict=True)) for b in sizes}
    if any(mismatches.values()):
        raise AssertionError(
            f"batched answers differ from one-at-a-time answers (mismatches per batch size: "
            f"{mismatches})"
        )
    new_tokens = sum(g.new_tokens for g in reference)
    by_size = {}
    for b in sizes:
        clean = [i for i, c in enumerate(cpu[b]) if not contended(c, threads)]
        clean = clean or list(range(len(cpu[b])))  # every run contended: keep them all
        median = statistics.median(seconds[b][i] for i in clean)
        by_size[str(b)] = {
            "batch_size": b,
            "seconds": median,
            "examples_per_s": n_prompts / median,
            "new_tokens_per_s": new_tokens / median,
            # CPU time over wall time: about the thread count when the cores were ours
            "cpu_per_wall": statistics.median(cpu[b][i] for i in clean),
            "discarded_runs": len(cpu[b]) - len(clean),
            "runs_seconds": seconds[b],
        }
    one = by_size["1"]["examples_per_s"]
    for v in by_size.values():
        v["ratio_to_batch_1"] = v["examples_per_s"] / one
    stopped = sum(g.finish_reason == "stop" for g in reference)
    return {
        "benchmark": "evaluation_batching",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "load_average_1min_at_end": os.getloadavg()[0],
        "parameters": {
            "student": student,
            "model_parameters": parameters,
            "prompts": n_prompts,
            "prompt_tokens": {"min": min(prompt_tokens), "max": max(prompt_tokens)},
            "max_new_tokens": max_new_tokens,
            "batch_sizes": sizes,
            "repeats": repeats,
            "dtype": "float32",
            "decoding": "greedy (rtdemo.evaluation.evaluate.generate)",
        },
        "answers": {
            "new_tokens_total": new_tokens,
            "new_tokens_mean": new_tokens / n_prompts,
            "ended_with_eos": stopped,
            "hit_the_cap": n_prompts - stopped,
            "first": asdict(reference[0]),
        },
        "identical_to_batch_1": True,  # asserted above
        "batch_sizes": by_size,
        "best_ratio": max(v["ratio_to_batch_1"] for v in by_size.values()),
    }


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small text table."""
    p, m, a = result["parameters"], result["machine"], result["answers"]
    head = [
        f"evaluation batching — {result['date']}",
        f"{m['cpu']}, {m['cores']} cores, torch {m.get('torch')} with {m['torch_threads']} "
        f"thread(s), Python {m['python']}, {m['platform']}",
        f"{p['student']} ({p['model_parameters'] / 1e6:.2f}M parameters), {p['prompts']} "
        f"prompts ({p['prompt_tokens']['min']}-{p['prompt_tokens']['max']} tokens), greedy fp32, "
        f"max {p['max_new_tokens']} new tokens (mean written {a['new_tokens_mean']:.1f}, "
        f"{a['ended_with_eos']} ended with EOS), median of {p['repeats']}",
        "answers identical to batch size 1 at every batch size: yes",
        "",
    ]
    rows = [
        f"batch size {v['batch_size']:>3}  {v['examples_per_s']:>7.2f} examples/s  "
        f"{v['new_tokens_per_s']:>8.0f} new tokens/s  {v['ratio_to_batch_1']:>6.2f}× batch 1  "
        f"CPU/wall {v['cpu_per_wall']:.2f}"
        + (f"  ({v['discarded_runs']} contended run(s) left out)" if v["discarded_runs"] else "")
        for v in result["batch_sizes"].values()
    ]
    return "\n".join(head + rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, run the benchmark, print the table, write JSON if asked; return figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prompts", type=int, default=64, help="test questions")
    parser.add_argument(
        "--batch-sizes", default="1,16,32", help="comma-separated (1 is always measured)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=60, help="cap on each answer")
    parser.add_argument("--repeats", type=int, default=3, help="runs per batch size (median)")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="torch threads")
    parser.add_argument("--model", type=Path, help="a trained student folder instead")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--batch-sizes takes comma-separated integers, e.g. 1,16,32")
    if min([args.prompts, args.max_new_tokens, args.repeats, args.threads, *sizes]) < 1:
        parser.error("prompts, max-new-tokens, repeats, threads and batch sizes must be >= 1")
    result = benchmark(
        args.prompts, sizes, args.max_new_tokens, args.repeats, args.threads, args.model
    )
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
