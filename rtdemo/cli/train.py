"""`rtdemo train`: step 3 of Fine-tune-CoT, fine-tuning a student on the curated set.

    rtdemo train --experiment demo --run cot --format cot --student tiny [--background]
    rtdemo train --experiment demo --run base --format vanilla --student tiny
    rtdemo train --experiment demo --run cot-2 --format cot --processes 2   # torchrun workers

Settings are checked before a background job starts (unknown student, batch size 0, no kept
samples, a seq2seq student given a causal recipe), so a job never starts only to fail at once.
With `--processes N` this process keeps the job and `torchrun` starts N workers that re-run this
command line (`_train_worker`). Measuring a trained run is `rtdemo evaluate`
(`rtdemo.cli.evaluate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtdemo.cli.common import add_workspace_flag
from rtdemo.cli.jobs import add_job_id_flag
from rtdemo.cli.train_progress import job_progress, printer
from rtdemo.errors import UserError
from rtdemo.hosting.credentials import with_own_hub_token
from rtdemo.jobs.context import job_context
from rtdemo.jobs.files import PROGRESS_NAME
from rtdemo.jobs.plan import start_plan
from rtdemo.pipeline.recipe import RunConfig
from rtdemo.training import launch
from rtdemo.training.request import (
    TrainRequest,
    check_processes,
    prepare_training,
    processes_for,
    training_plan,
)
from rtdemo.training.runs import create_run, finish_run, run_folder
from rtdemo.training.settings import RESULT_NAME, TrainResult, TrainSettings
from rtdemo.training.trainer import train
from rtdemo.validation import add_flags
from rtdemo.workspace.store import Store, workspace_path

#: The `TrainSettings` fields `rtdemo train` overrides, each as `--field-name` (`add_flags`).
OVERRIDE_FLAGS = ("method", "epochs", "max_steps", "batch_size", "learning_rate", "precision")
OVERRIDE_FLAGS += ("val_fraction", "seed", "max_length")


def _train_args(args: argparse.Namespace) -> dict:
    """The `TrainSettings` overrides the flags give (a flag not given is None)."""
    names = (*OVERRIDE_FLAGS, "shuffle")
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def request_of(args: argparse.Namespace) -> TrainRequest:
    """The `TrainRequest` the flags describe."""
    return TrainRequest(
        experiment=args.experiment,
        run=args.run,
        format=args.format,
        student=args.student,
        recipe=args.recipe,
        diverse_samples=args.diverse_samples,
        filter_answers=not args.no_filter,
        overrides=_train_args(args),
        processes=args.processes,
    )


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune a student on an experiment's curated set (or its gold answers, vanilla)."""

    if launch.in_launched_process():
        return _train_worker(args)
    request = request_of(args)
    with Store(workspace_path(args.workspace)) as store:
        if args.background:
            plan = with_own_hub_token(training_plan(store, request, args.owner))
            job = start_plan(store, plan, args.owner)
            state = "queued behind another torch job" if job.status == "queued" else "started"
            print(f"{state}: job {job.id} (train) — watch it: rtdemo jobs show {job.id}")
            return 0
        exp, settings, records = prepare_training(store, request, args.owner)
        processes = processes_for(args.processes, settings.batch_size)
        from dataclasses import asdict

        run = create_run(
            store,
            exp,
            args.run,
            args.format,
            args.diverse_samples,
            args.student,
            settings.method,
            len(records),
            asdict(settings),
        )
        with job_context(store.workspace, args.job_id) as ctx:
            if args.job_id is not None:  # the progress file for the tab, lines for the job's log
                ctx.log(
                    f"training run {args.run} ({args.format}, {args.student}, {settings.method}) "
                    f"on {len(records)} examples"
                )
                on_progress = job_progress(ctx.progress, ctx.log)
            else:
                on_progress = printer()
            if processes > 1:
                result = _train_launched(args, store, run.output_dir, processes, ctx)
            else:
                result = train(
                    records,
                    settings,
                    run.output_dir,
                    resume=True,
                    on_progress=on_progress,
                    should_stop=ctx.cancelled,
                )
            if result.stopped:
                print(f"stopped at step {result.global_step}: resume with the same command")
                return 3
            finish_run(store, run, {**asdict(result), "processes": processes})
    print(
        f"trained {args.run}: {result.global_step} steps in {result.train_seconds:.0f} s "
        f"({result.precision}); model in {result.final_dir}"
    )
    return 0


def _train_launched(args: argparse.Namespace, store: Store, output_dir: Path, processes, ctx):
    """Train in `processes` data-parallel workers (`rtdemo.training.launch`); the `TrainResult`
    process 0 wrote. The workers re-run this command line; this process keeps the job (heartbeat,
    cancel)."""
    import json

    progress_file = None
    if args.job_id is not None:
        progress_file = ctx.run_dir / PROGRESS_NAME
    print(f"training in {processes} data-parallel processes (torchrun)", flush=True)
    argv = launch.worker_argv(args.argv, store.workspace)
    code = launch.run_launched(
        processes, argv, cancelled=ctx.cancelled, progress_file=progress_file
    )
    path = output_dir / RESULT_NAME
    if code != 0 or not path.is_file():
        raise UserError(
            f"the {processes}-process training failed (launcher exit status {code}): the "
            "workers' errors are printed above (in the job's log when run in the background)"
        )
    return TrainResult(**json.loads(path.read_text()))


def _train_worker(args: argparse.Namespace) -> int:
    """One data-parallel worker (started by torchrun): train with batch size / world size.

    Only process 0 prints progress and writes files (the trainer and `train` see to it); the
    launching process records the run as trained.
    """
    import dataclasses

    launch.exit_with_launcher()
    world, rank = launch.world_size(), launch.rank()
    with Store(workspace_path(args.workspace)) as store:
        exp, settings, records = prepare_training(store, request_of(args), args.owner)
        output_dir = run_folder(store, exp, args.run)
    check_processes(world, settings.batch_size)
    settings = dataclasses.replace(settings, batch_size=settings.batch_size // world)
    write = launch.progress_writer()
    # In a job, process 0's stdout is the job's log: the same lines as a single-process job.
    show = job_progress(write, lambda line: print(line, flush=True)) if write else printer()
    result = train(
        records,
        settings,
        output_dir,
        resume=True,
        on_progress=show,
        should_stop=launch.stop_requested,
    )
    import torch.distributed as dist

    if rank == 0:
        backend = dist.get_backend() if dist.is_initialized() else "none"
        print(
            f"process 0 of {world} ({backend}): step {result.global_step}, "
            f"{settings.batch_size} examples per process and step",
            flush=True,
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add train to the CLI."""
    p = commands.add_parser("train", help="fine-tune a student (Fine-tune-CoT or vanilla)")
    p.add_argument("--experiment", required=True, help="experiment name")
    p.add_argument("--run", required=True, help="name of this student run, e.g. cot-d1")
    # Flags from the settings' one definition (type, range, choices, help), named as the setting.
    add_flags(
        p,
        RunConfig,
        ["format", "student", "recipe", "diverse_samples"],
        aliases={"diverse_samples": "--samples-per-question"},
    )
    p.add_argument("--no-filter", action="store_true", help="train on wrong rationales too")
    g = p.add_argument_group("overrides of the recipe")
    add_flags(g, TrainSettings, OVERRIDE_FLAGS, defaults=False, aliases={"learning_rate": "--lr"})
    g.add_argument(
        "--no-shuffle",
        dest="shuffle",
        action="store_const",
        const=False,
        help="batches in the records' order, no length grouping (to compare runs step by step)",
    )
    p.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="data-parallel training processes, started with torchrun (default: one per GPU "
        "when there are several, else 1); --batch-size stays the global batch, each process "
        "takes batch size / N. On CPU they use gloo: no faster on a few cores",
    )
    p.add_argument("--background", action="store_true", help="run as a background job")
    add_workspace_flag(p)
    p.add_argument("--owner", default="local", help=argparse.SUPPRESS)
    add_job_id_flag(p)
    p.set_defaults(func=cmd_train)
