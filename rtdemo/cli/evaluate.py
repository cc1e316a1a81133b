"""`rtdemo evaluate` and `rtdemo pipeline`: measuring students, and every stage from a recipe.

    rtdemo evaluate --experiment demo --run cot [--background]
    rtdemo pipeline --config configs/demo.yaml --workspace demo-ws

`evaluate` scores a trained run on a split with the paper's answer cleansing and stores its
metrics and per-sample predictions; `pipeline` runs one YAML recipe end to end (generate, filter,
train every run, evaluate) through `rtdemo.pipeline.run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtdemo.cli.common import add_workspace_flag
from rtdemo.cli.jobs import add_job_id_flag
from rtdemo.evaluation.evaluate import evaluate, save_eval
from rtdemo.evaluation.request import EvalRequest, evaluation_plan, prepare_evaluation
from rtdemo.hosting.credentials import with_own_hub_token
from rtdemo.jobs.context import job_context
from rtdemo.jobs.plan import start_plan
from rtdemo.pipeline.recipe import load_config
from rtdemo.pipeline.run import run_pipeline
from rtdemo.tasks import get_task
from rtdemo.training.runs import save_evaluation
from rtdemo.workspace.store import Store, workspace_path


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a trained student run on the test split with the paper's answer cleansing."""

    request = EvalRequest(
        args.experiment, args.run, args.split, args.batch_size, args.max_total_length
    )
    with Store(workspace_path(args.workspace)) as store:
        if args.background:
            plan = with_own_hub_token(evaluation_plan(store, request, args.owner))
            job = start_plan(store, plan, args.owner)
            print(f"job {job.id} (evaluate) {job.status} — watch it: rtdemo jobs show {job.id}")
            return 0
        exp, run, examples = prepare_evaluation(store, request, args.owner)
        with job_context(store.workspace, args.job_id) as ctx:

            def progress(done: int, total: int) -> None:
                if args.job_id is not None:
                    ctx.progress(done=done, total=total)

            result = evaluate(
                run.output_dir / "final",
                examples,
                get_task(exp.task).answer,
                run.format,
                batch_size=args.batch_size,
                max_total_length=args.max_total_length,
                on_progress=progress,
                should_stop=ctx.cancelled,
            )
            folder = run.output_dir / f"evaluation-{args.split}"
            save_eval(result, folder)
            save_evaluation(
                store,
                exp,
                run.name,
                args.split,
                result.metrics.to_dict(),
                folder / "predictions.jsonl",
                run,
            )
    m = result.metrics
    print(
        f"{run.name} on {m.count} {args.split} questions: accuracy {m.accuracy:.1%}, contains "
        f"answer {m.contains_answer:.1%}, correct format {m.correct_format:.1%}, complete "
        f"{'n/a' if m.complete is None else f'{m.complete:.1%}'}; predictions in {folder}"
    )
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Run a whole recipe: generate, filter, train every run, evaluate, write results."""

    config = load_config(args.config)
    workspace = workspace_path(args.workspace)
    results = run_pipeline(config, workspace, log=lambda m: print(m, flush=True))
    print()
    teacher = results["teacher"]["accuracy"]
    print(f"teacher: {'not measured' if teacher is None else f'{teacher:.1%}'}")
    for run in results["runs"]:
        print(f"{run['name']:20} {run['format']:8} accuracy {run['metrics']['accuracy']:.1%}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add evaluate and pipeline to the CLI."""
    e = commands.add_parser("evaluate", help="evaluate a trained student on the test split")
    e.add_argument("--experiment", required=True, help="experiment name")
    e.add_argument("--run", required=True, help="the trained student run")
    e.add_argument("--split", choices=("train", "test"), default="test", help="default test")
    e.add_argument("--batch-size", type=int, default=32, help="questions per generate batch")
    e.add_argument(
        "--max-total-length",
        type=int,
        default=1024,
        help="cap on prompt + generated tokens (paper: 1024)",
    )
    e.add_argument("--background", action="store_true", help="run as a background job")
    e.set_defaults(func=cmd_evaluate)

    pl = commands.add_parser("pipeline", help="generate → filter → train → evaluate from a recipe")
    pl.add_argument(
        "--config", required=True, type=Path, help="a YAML recipe, e.g. configs/demo.yaml"
    )
    pl.set_defaults(func=cmd_pipeline)

    for sub in (e, pl):
        add_workspace_flag(sub)
        sub.add_argument("--owner", default="local", help=argparse.SUPPRESS)
    add_job_id_flag(e)
