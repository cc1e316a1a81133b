"""Training throughput: the project's trainer against a plain loop with fixed-length padding.

Run from the repository root (results also go to benchmarks/README.md by hand):

    .venv/bin/python benchmarks/training_throughput.py
    .venv/bin/python benchmarks/training_throughput.py --tokenizer words --questions 1000 \
        --steps 60 --warmup-steps 5 --repeats 3 --threads 2 --json /tmp/training_throughput.json

Same model, same data, same optimizer for every variant:

- model: the tiny offline student (`rtdemo.students.loading.build_tiny_student`, 4 layers, width
  128, random weights, seed 0), with the word tokenizer built from the training texts (`--tokenizer
  words`, the default of `TINY_RECIPE`) or bytes only (`--tokenizer bytes`). Every variant loads
  the same folder afresh, so all start from the same weights;
- data: Last Letter Concatenation, `--questions` synthetic questions of 2-4 words (seed 0), a
  greedy rationale each from the built-in teacher (error rate 0.1, as the demo), kept when its
  answer matches the gold (answer filtering), formatted for Fine-tune-CoT by
  `rtdemo.curation.curate.format_pair` (prompt `"{q} ###"`, completion `" {r} --> {a}"` + EOS);
- optimizer: `TINY_RECIPE`'s (AdamW, fused, lr 3e-3, warm-up 5 %, cosine decay, gradient
  clipping at 1.0, batch 16), the precision `TINY_RECIPE` picks on this machine.

Variants, each trained for `--warmup-steps` + `--steps` optimizer steps; only the last `--steps`
are timed (the first ones warm up the allocator and kernels):

1. **project**: `rtdemo.training.trainer.build_trainer` (TRL's `SFTTrainer`: completion-only loss
   through its fused LM head, dynamic padding, length-grouped batches, per-step logging) with
   `TINY_RECIPE` (no checkpoints: saving is not what is measured);
2. **baseline**: a plain PyTorch loop: every example padded to the longest example of the data,
   batches in random order (reshuffled each epoch), the model's own loss on completion labels;
3. **diagnostic**: the same plain loop on length-grouped batches with dynamic padding
   (transformers' `LengthGroupedSampler`), to split the project-vs-baseline ratio into what the
   padding saves and what the trainer's machinery costs.

Figures: non-padding tokens per second (the tokens of the examples, prompt and EOS included),
its ratio to the baseline, and padding waste (share of the positions in the trained batches that
are padding). Variants run interleaved (project, baseline, diagnostic, project, ...), `--repeats`
times, median reported. `--threads` sets `torch.set_num_threads` (default: the usable cores).
Each run also records its CPU time over wall time: a run that got less than 90 % of its threads'
cores shared them with another process and is left out of the median (`discarded_runs`; all runs
are kept in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: rtdemo importable
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import contended, machine_info, usable_cores  # noqa: E402
from rtdemo.curation.curate import format_pair  # noqa: E402
from rtdemo.tasks.synthetic import SyntheticSettings, generate  # noqa: E402
from rtdemo.teachers.base import rationale_prompt  # noqa: E402
from rtdemo.teachers.builtin import BuiltinTeacher  # noqa: E402

VARIANTS = ("project", "baseline", "diagnostic")
LABELS = {
    "project": "project trainer (build_trainer: length-grouped, dynamic padding)",
    "baseline": "plain loop, fixed-length padding, random order",
    "diagnostic": "plain loop, length-grouped, dynamic padding",
}


# -- data -------------------------------------------------------------------------------------


def last_letter_records(
    n_questions: int, seed: int = 0, error_rate: float = 0.1
) -> tuple[list[dict], int]:
    """Fine-tune-CoT records (prompt, completion) for `n_questions` last-letter questions of 2-4
    words, from the built-in teacher's greedy rationales that reach the gold answer; and how many
    questions were filtered out."""
    questions = generate(
        "last_letter_concatenation",
        SyntheticSettings(seed=seed, size=n_questions, length=4, min_length=2),
    )
    teacher = BuiltinTeacher(error_rate=error_rate, seed=seed)

    async def rationales() -> list[str]:
        out = []
        for q in questions:
            [c] = await teacher.rationale(
                rationale_prompt(q.question), n=1, temperature=0.0, max_tokens=256
            )
            out.append(c.text)
        return out

    records = []
    for q, rationale in zip(questions, asyncio.run(rationales()), strict=True):
        if rationale.rstrip().endswith(f"So the answer is {q.answer}."):  # answer filtering
            records.append(format_pair(q.question, rationale, q.answer, "cot"))
    return records, len(questions) - len(records)


def tokenize_records(tokenizer, records: list[dict], max_length: int) -> list[dict[str, list]]:
    """Input ids and labels as the project's trainer builds them: prompt + completion + EOS, the
    prompt's labels -100 (the prompt's tokens are a prefix of the whole text's: METHOD.md)."""
    eos = tokenizer.eos_token_id
    out = []
    for r in records:
        prompt = tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]
        full = tokenizer(r["prompt"] + r["completion"], add_special_tokens=False)["input_ids"]
        if full[: len(prompt)] != prompt:
            raise RuntimeError("the prompt's tokens are not a prefix of prompt + completion")
        ids = [*full, eos][:max_length]
        labels = [-100] * len(prompt) + ids[len(prompt) :]
        out.append({"input_ids": ids, "labels": labels[: len(ids)]})
    return out


# -- the plain loop ---------------------------------------------------------------------------


def fixed_batches(
    examples: list[dict], batch_size: int, seed: int, pad_id: int
) -> Iterator[dict[str, Any]]:
    """Endless batches in random order (a new permutation each epoch), every row padded to the
    longest example of the whole data."""
    import torch

    length = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    epoch = 0
    while True:
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed + epoch))
        for start in range(0, len(order) - batch_size + 1, batch_size):  # drop the last partial
            rows = order[start : start + batch_size]
            yield {"input_ids": ids[rows], "attention_mask": mask[rows], "labels": labels[rows]}
        epoch += 1


def grouped_batches(
    examples: list[dict], batch_size: int, seed: int, pad_id: int
) -> Iterator[dict[str, Any]]:
    """Endless length-grouped batches (transformers' `LengthGroupedSampler`, reseeded each epoch,
    as the project's trainer does), each padded to its own longest row."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = [len(e["input_ids"]) for e in examples]
    epoch = 0
    while True:
        sampler = LengthGroupedSampler(
            batch_size,
            lengths=lengths,
            generator=torch.Generator().manual_seed(seed + epoch),
        )
        order = list(sampler)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            rows = [examples[i] for i in order[start : start + batch_size]]
            width = max(len(r["input_ids"]) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            labels = torch.full((len(rows), width), -100, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                n = len(r["input_ids"])
                ids[i, :n] = torch.tensor(r["input_ids"])
                labels[i, :n] = torch.tensor(r["labels"])
                mask[i, :n] = 1
            yield {"input_ids": ids, "attention_mask": mask, "labels": labels}
        epoch += 1


def run_plain(
    folder: Path, examples: list[dict], settings, precision: str, warmup: int, steps: int, grouped
) -> dict[str, Any]:
    """The plain PyTorch loop: AdamW (fused, as the trainer's default), the recipe's schedule,
    gradient clipping at 1.0, the model's own loss. Times the last `steps` steps."""
    import contextlib

    import torch
    from transformers import get_scheduler

    from rtdemo.students.loading import load_student

    torch.manual_seed(settings.seed)
    model, tokenizer, _ = load_student(folder, for_training=True)
    model.config.use_cache = False
    model.train()
    total = warmup + steps
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay,
        fused=True,
    )  # fmt: skip
    scheduler = get_scheduler(
        settings.scheduler,
        optimizer,
        num_warmup_steps=round(settings.warmup * total),
        num_training_steps=total,
    )
    make = grouped_batches if grouped else fixed_batches
    batches = make(examples, settings.batch_size, settings.seed, tokenizer.pad_token_id)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    tokens = positions = 0
    start = 0.0
    for step in range(total):
        if step == warmup:
            start, cpu = time.perf_counter(), time.process_time()
        batch = next(batches)
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # what a loop that logs its loss each step pays (as the trainer)
        if step >= warmup:
            tokens += int(batch["attention_mask"].sum())
            positions += batch["attention_mask"].numel()
    seconds = time.perf_counter() - start
    return _figures(tokens, positions, seconds, steps, time.process_time() - cpu)


# -- the project's trainer --------------------------------------------------------------------


def run_project(
    folder: Path, records: list[dict], settings, precision: str, warmup: int, steps: int
) -> dict[str, Any]:
    """`build_trainer` with the recipe; a callback times the last `steps` optimizer steps and
    reads the trainer's own non-padding token count; the collator is wrapped to count padding."""
    import torch
    from transformers import TrainerCallback

    from rtdemo.students.loading import load_student
    from rtdemo.training.trainer import _quiet_libraries, build_trainer

    _quiet_libraries()
    torch.manual_seed(settings.seed)
    model, tokenizer, kind = load_student(folder, for_training=True)
    marks: dict[int, tuple[float, float, int]] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            now = (time.perf_counter(), time.process_time())
            marks[state.global_step] = (*now, state.num_input_tokens_seen)

    batches: list[tuple[int, int]] = []  # (non-padding tokens, positions) per collated batch

    with tempfile.TemporaryDirectory(prefix="rtdemo-bench-") as tmp:
        trainer = build_trainer(
            model, tokenizer, kind, records, settings, Path(tmp) / "out",
            precision=precision, callbacks=[Clock()],
        )  # fmt: skip
        collate = trainer.data_collator

        def counting(features):
            batch = collate(features)
            mask = batch["attention_mask"]
            batches.append((int(mask.sum()), mask.numel()))
            return batch

        trainer.data_collator = counting
        trainer.train()
    (t0, c0, n0), (t1, c1, n1) = marks[warmup], marks[warmup + steps]
    # The dataloader may collate a batch ahead of the step that trains on it: the trained batches
    # are the first `warmup + steps`.
    timed = batches[warmup : warmup + steps]
    tokens = sum(t for t, _ in timed)
    if tokens != n1 - n0:
        raise RuntimeError(f"token counts disagree: collator {tokens}, trainer {n1 - n0}")
    return _figures(tokens, sum(p for _, p in timed), t1 - t0, steps, c1 - c0)


def _figures(
    tokens: int, positions: int, seconds: float, steps: int, cpu_seconds: float
) -> dict[str, Any]:
    return {
        "steps": steps,
        "seconds": seconds,
        # CPU time of this process over wall time: about the thread count when the cores were
        # ours, less when another process took them (then the run is slow: discard it).
        "cpu_per_wall": cpu_seconds / seconds,
        "tokens": tokens,
        "positions": positions,
        "tokens_per_s": tokens / seconds,
        "positions_per_s": positions / seconds,
        "ms_per_step": seconds * 1000 / steps,
        "padding_waste": 1 - tokens / positions,
    }


# -- the benchmark ----------------------------------------------------------------------------


def benchmark(
    n_questions: int,
    steps: int,
    warmup: int,
    repeats: int,
    threads: int,
    tokenizer_kind: str = "words",
    batch_size: int | None = None,
    width: int | None = None,
    layers: int | None = None,
) -> dict[str, Any]:
    """Train every variant `repeats` times, interleaved; return every figure."""
    import torch

    from rtdemo.students.loading import build_tiny_student, load_student
    from rtdemo.training.settings import TINY_RECIPE, TrainSettings, choose_precision

    torch.set_num_threads(threads)
    machine = machine_info(threads)  # the load average before the runs
    records, filtered = last_letter_records(n_questions)
    texts = [r["prompt"] + r["completion"] for r in records]
    overrides: dict[str, Any] = {
        "max_steps": warmup + steps,
        "save_every_epoch": False,
        "tiny_tokenizer": tokenizer_kind,
    }
    if batch_size:
        overrides["batch_size"] = batch_size
    if width:
        overrides["tiny_width"] = width
    if layers:
        overrides["tiny_layers"] = layers
    with tempfile.TemporaryDirectory(prefix="rtdemo-bench-") as tmp:
        settings = TrainSettings(**{**TINY_RECIPE, **overrides})
        folder = build_tiny_student(
            Path(tmp) / "tiny", layers=settings.tiny_layers, width=settings.tiny_width,
            seed=settings.seed, texts=texts if tokenizer_kind == "words" else None,
        )  # fmt: skip
        settings = TrainSettings(**{**TINY_RECIPE, **overrides, "student": str(folder)})
        precision = choose_precision(settings.precision)
        model, tokenizer, _ = load_student(folder, for_training=True)
        parameters = sum(p.numel() for p in model.parameters())
        del model
        examples = tokenize_records(tokenizer, records, settings.max_length)
        lengths = sorted(len(e["input_ids"]) for e in examples)
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for _ in range(repeats):
            runs["project"].append(run_project(folder, records, settings, precision, warmup, steps))
            runs["baseline"].append(
                run_plain(folder, examples, settings, precision, warmup, steps, grouped=False)
            )
            runs["diagnostic"].append(
                run_plain(folder, examples, settings, precision, warmup, steps, grouped=True)
            )
    variants = {}
    for name, measured in runs.items():
        clean = [r for r in measured if not contended(r["cpu_per_wall"], threads)] or measured
        variants[name] = {
            "label": LABELS[name],
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in clean),
            "ms_per_step": statistics.median(r["ms_per_step"] for r in clean),
            "padding_waste": statistics.median(r["padding_waste"] for r in clean),
            "cpu_per_wall": statistics.median(r["cpu_per_wall"] for r in clean),
            "discarded_runs": len(measured) - len(clean),
            "runs": measured,
        }
    base = variants["baseline"]["tokens_per_s"]
    for v in variants.values():
        v["ratio_to_baseline"] = v["tokens_per_s"] / base
    return {
        "benchmark": "training_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "load_average_1min_at_end": os.getloadavg()[0],
        "parameters": {
            "questions": n_questions,
            "records": len(records),
            "filtered_out": filtered,
            "tokenizer": tokenizer_kind,
            "vocab_size": len(tokenizer),
            "model_parameters": parameters,
            "layers": settings.tiny_layers,
            "width": settings.tiny_width,
            "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "precision": precision,
            "warmup_steps": warmup,
            "timed_steps": steps,
            "repeats": repeats,
            "example_tokens": {
                "min": lengths[0],
                "median": lengths[len(lengths) // 2],
                "max": lengths[-1],
                "mean": sum(lengths) / len(lengths),
            },
        },
        "variants": variants,
        "project_vs_baseline": variants["project"]["ratio_to_baseline"],
        "padding_effect": variants["diagnostic"]["ratio_to_baseline"],
        "trainer_vs_plain_loop_same_batching": (
            variants["project"]["tokens_per_s"] / variants["diagnostic"]["tokens_per_s"]
        ),
    }


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small text table."""
    p, m = result["parameters"], result["machine"]
    lengths = p["example_tokens"]
    head = [
        f"training throughput — {result['date']}",
        f"{m['cpu']}, {m['cores']} cores, torch {m.get('torch')} with {m['torch_threads']} "
        f"thread(s), Python {m['python']}, {m['platform']}",
        f"tiny student ({p['model_parameters'] / 1e6:.2f}M parameters, {p['tokenizer']} "
        f"tokenizer), {p['records']} last-letter CoT records (tokens {lengths['min']}-"
        f"{lengths['max']}, mean {lengths['mean']:.0f}), batch {p['batch_size']}, "
        f"{p['precision']}, {p['timed_steps']} timed steps after {p['warmup_steps']}, "
        f"median of {p['repeats']}",
        "",
    ]
    rows = []
    for name in VARIANTS:
        v = result["variants"][name]
        rows.append(
            f"{v['label']:<66} {v['tokens_per_s']:>9.0f} tok/s  {v['ratio_to_baseline']:>5.2f}×  "
            f"{v['ms_per_step']:>6.1f} ms/step  padding {v['padding_waste']:>3.0%}  "
            f"CPU/wall {v['cpu_per_wall']:.2f}"
            + (
                f"  ({v['discarded_runs']} contended run(s) left out)"
                if v["discarded_runs"]
                else ""
            )
        )
    tail = [
        "",
        f"project vs baseline: {result['project_vs_baseline']:.2f}×; length grouping alone "
        f"(plain loop): {result['padding_effect']:.2f}×; trainer vs plain loop on the same "
        f"batching: {result['trainer_vs_plain_loop_same_batching']:.2f}×",
    ]
    return "\n".join(head + rows + tail)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, run the benchmark, print the table, write JSON if asked; return figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--questions", type=int, default=1000, help="last-letter questions")
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="torch threads")
    parser.add_argument("--tokenizer", choices=("words", "bytes"), default="words")
    parser.add_argument("--batch-size", type=int, help="default: TINY_RECIPE's (16)")
    parser.add_argument("--width", type=int, help="tiny student width (default: the recipe's)")
    parser.add_argument("--layers", type=int, help="tiny student layers (default: the recipe's)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if min(args.questions, args.steps, args.warmup_steps, args.repeats, args.threads) < 1:
        parser.error("questions, steps, warmup-steps, repeats and threads must be >= 1")
    result = benchmark(
        args.questions, args.steps, args.warmup_steps, args.repeats, args.threads,
        args.tokenizer, args.batch_size, args.width, args.layers,
    )  # fmt: skip
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
