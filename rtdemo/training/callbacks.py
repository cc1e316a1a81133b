"""The training loop's plumbing: progress and cancel as a Trainer callback, checkpoints (finding
the last, pruning a finished run's), and the agreement between data-parallel processes
(`rtdemo.training.trainer.train` uses all of it)."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[dict[str, Any]], None]


def progress_callback(on_progress: Progress | None, should_stop: Callable[[], bool]):
    """A `TrainerCallback` that reports progress and turns `should_stop()` into stop + save."""
    from transformers import TrainerCallback

    class ProgressAndCancel(TrainerCallback):
        def __init__(self) -> None:
            self.stopped = False
            self.start_step = self.tokens0 = 0
            self.last_loss: float | None = None
            self.last_saved = -1
            self.t0 = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):
            # When resuming, the trainer's state was loaded from the checkpoint by now.
            self.start_step, self.tokens0 = state.global_step, state.num_input_tokens_seen
            self.t0 = time.monotonic()

        def _poll(self, control) -> None:
            self.stopped = self.stopped or should_stop()
            if self.stopped:  # on_train_begin resets the trainer's flag: raise it from ours
                control.should_training_stop = True

        def on_step_end(self, args, state, control, **kwargs):
            self._poll(control)
            if self.stopped or state.global_step >= state.max_steps:
                control.should_save = True  # so that resume continues from here

        def on_substep_end(self, args, state, control, **kwargs):
            self._poll(control)  # mid gradient accumulation: the partial step is dropped

        def on_epoch_end(self, args, state, control, **kwargs):
            if self.stopped:  # a cancelled run saves but does not evaluate
                control.should_evaluate = False
            if state.global_step == self.last_saved:
                control.should_save = False  # already saved at this step

        def on_save(self, args, state, control, **kwargs):
            self.last_saved = state.global_step

        def tokens_per_second(self, state) -> float:
            seconds = max(time.monotonic() - self.t0, 1e-9)
            return (state.num_input_tokens_seen - self.tokens0) / seconds

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:  # evaluation and end-of-training summaries
                return
            self.last_loss = float(logs["loss"])
            per_step = (time.monotonic() - self.t0) / max(state.global_step - self.start_step, 1)
            if on_progress is not None and state.is_world_process_zero:  # one line per step
                on_progress(
                    {
                        "step": state.global_step,
                        "total": state.max_steps,
                        "epoch": round(float(state.epoch or 0), 4),
                        "loss": self.last_loss,
                        "learning_rate": logs.get("learning_rate"),
                        "tokens_per_second": round(self.tokens_per_second(state), 1),
                        "eta": round(per_step * max(state.max_steps - state.global_step, 0), 1),
                    }
                )

    return ProgressAndCancel()


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest `checkpoint-N` folder in `output_dir`, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None


CHECKPOINT = re.compile(r"checkpoint-\d+")


def prune_checkpoints(output_dir: Path) -> list[str]:
    """Delete every `checkpoint-N` folder of `output_dir`; return their names.

    For a finished run (its `final/` written): a checkpoint only serves to resume an unfinished
    one, and holds the optimizer's state too (about three times the weights of a full run)."""
    if not output_dir.is_dir():
        return []
    pruned = sorted(
        p.name for p in output_dir.iterdir() if p.is_dir() and CHECKPOINT.fullmatch(p.name)
    )
    for name in pruned:
        shutil.rmtree(output_dir / name)
    return pruned


def distributed_state():
    """accelerate's `PartialState` when this process is one of several data-parallel workers
    (torchrun / accelerate launch, `rtdemo.training.launch`), else None.

    Made here as `TrainingArguments` would make it (gloo on CPU, NCCL on CUDA); the arguments
    then reuse it (it is a singleton), and `train` can synchronise its processes before them.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def synced(stop: Callable[[], bool], state) -> Callable[[], bool]:
    """`stop` agreed on by every process: True everywhere as soon as one process sees it. Each
    call is a collective, so every process must call it at the same points (they do: between
    phases and in the callback's step hooks); otherwise a process that stopped alone would leave
    the others waiting in DDP's gradient all-reduce."""
    if state is None:
        return stop
    import torch
    import torch.distributed as dist

    def any_process() -> bool:
        flag = torch.tensor([1.0 if stop() else 0.0], device=state.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    return any_process


def is_main_process() -> bool:
    """Whether this is process 0 of a data-parallel run (or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0
