"""The offline demo over several seeds: is Fine-tune-CoT's lead over vanilla a fluke of one seed?

Run from the repository root (figures go to benchmarks/README.md by hand):

    .venv/bin/python benchmarks/demo_seeds.py                       # seeds 0 1 2, configs/demo.yaml
    .venv/bin/python benchmarks/demo_seeds.py --seeds 0 1 2 --json /tmp/demo_seeds.json
    .venv/bin/python benchmarks/demo_seeds.py --config configs/demo.yaml --max-steps 20  # smoke

Seed `s` changes everything random in the demo at once: the training questions
(`synthetic_train.seed = 1000 s`), the test questions (`synthetic_test.seed = 1000 s + 1`; seed 0
keeps the demo's own 0 and 1) and the student's initial weights and data order (`train.seed = s`).
Each seed runs the whole pipeline (`rtdemo.pipeline.run.run_pipeline`) in a fresh workspace, in this
process, one after the other (never two torch workloads at once). Per seed: vanilla and
Fine-tune-CoT accuracy on the test split, the lead (CoT − vanilla, in points), the teacher's
accuracy and the pipeline's wall time. Summary: mean, min and max of each; the baseline every
figure is compared with is the vanilla run of the same seed, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: rtdemo importable
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import machine_info, usable_cores  # noqa: E402
from rtdemo.pipeline.recipe import PipelineConfig, load_config  # noqa: E402
from rtdemo.pipeline.run import run_pipeline  # noqa: E402


def seeded(config: PipelineConfig, seed: int, max_steps: int | None) -> PipelineConfig:
    """`config` with every random choice moved to `seed` (module docstring)."""
    task = config.task
    if task.synthetic_train is not None:
        task = replace(task, synthetic_train=replace(task.synthetic_train, seed=1000 * seed))
    if task.synthetic_test is not None:
        task = replace(task, synthetic_test=replace(task.synthetic_test, seed=1000 * seed + 1))
    runs = []
    for run in config.runs:
        train = {**run.train, "seed": seed}
        if max_steps is not None:
            train["max_steps"] = max_steps
        runs.append(replace(run, train=train))
    return replace(config, task=task, runs=runs)


def run_seed(config: PipelineConfig, seed: int, workspace: Path) -> dict[str, Any]:
    """Run the pipeline for one seed; its accuracies, lead and wall time."""
    started = time.monotonic()
    results = run_pipeline(config, workspace, log=lambda _line: None)
    wall = time.monotonic() - started
    by_format = {run["format"]: run for run in results["runs"]}
    cot = by_format["cot"]["metrics"]["accuracy"]
    vanilla = by_format["vanilla"]["metrics"]["accuracy"]
    return {
        "seed": seed,
        "vanilla_accuracy": vanilla,
        "cot_accuracy": cot,
        "lead_points": round(100 * (cot - vanilla), 2),
        "teacher_accuracy": results["teacher"]["accuracy"],
        "wall_seconds": round(wall, 1),
        "train_seconds": {r["name"]: r["train_seconds"] for r in results["runs"]},
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.mean(values), 4), "min": min(values), "max": max(values)}


def benchmark(config_path: Path, seeds: list[int], max_steps: int | None) -> dict[str, Any]:
    """Every seed's figures and their summary."""
    import torch

    torch.set_num_threads(usable_cores())
    base = load_config(config_path)
    per_seed = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix=f"demo-seed{seed}-") as workspace:
            per_seed.append(run_seed(seeded(base, seed, max_steps), seed, Path(workspace)))
        print(json.dumps(per_seed[-1]), flush=True)
    keys = ("vanilla_accuracy", "cot_accuracy", "lead_points", "wall_seconds")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(torch.get_num_threads()),
        "parameters": {"config": str(config_path), "seeds": seeds, "max_steps": max_steps},
        "seeds": per_seed,
        "summary": {key: _summary([s[key] for s in per_seed]) for key in keys},
    }


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of the per-seed figures and the summary."""
    lines = [
        "| seed | vanilla | Fine-tune-CoT | lead (points) | teacher | wall time |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["seeds"]:
        lines.append(
            f"| {s['seed']} | {s['vanilla_accuracy']:.1%} | {s['cot_accuracy']:.1%} | "
            f"{s['lead_points']:+.1f} | {s['teacher_accuracy']:.1%} | {s['wall_seconds']:.0f} s |"
        )
    m = result["summary"]
    lines.append(
        f"| mean (min–max) | {m['vanilla_accuracy']['mean']:.1%} | "
        f"{m['cot_accuracy']['mean']:.1%} ({m['cot_accuracy']['min']:.1%}–"
        f"{m['cot_accuracy']['max']:.1%}) | {m['lead_points']['mean']:+.1f} "
        f"({m['lead_points']['min']:+.1f}–{m['lead_points']['max']:+.1f}) | | "
        f"{m['wall_seconds']['mean']:.0f} s (max {m['wall_seconds']['max']:.0f} s) |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse flags, run, print the table (and write `--json`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, help="override every run's steps (smoke tests)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = benchmark(args.config, args.seeds, args.max_steps)
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
