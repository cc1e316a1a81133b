"""Training settings and recipes: what a fine-tuning run is asked to do, and what it did.

    from rtdemo.training.settings import TINY_RECIPE, TrainSettings
    settings = TrainSettings(**{**TINY_RECIPE, "max_steps": 1000})   # validated on creation
    result = rtdemo.training.trainer.train(records, settings, Path("runs/cot"))  # -> TrainResult

`TrainSettings` fields carry their help text; `__post_init__` refuses bad values with messages
that say what to change. `PAPER_RECIPE` and `TINY_RECIPE` are named starting points
(`rtdemo.training.recipes.settings_for` picks one by name). `TrainResult` is written as JSON to
`output_dir/train_result.json` (`RESULT_NAME`). `choose_precision` decides bf16 or fp32 at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rtdemo.errors import UserError
from rtdemo.students.loading import StudentKind

Precision = Literal["bf16", "fp32"]
RESULT_NAME = "train_result.json"
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant")
SCHEDULERS += ("constant_with_warmup", "inverse_sqrt", "cosine_with_min_lr")


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class TrainSettings:
    """How to fine-tune a student. Validated on creation; messages say what to change."""

    student: str = field(metadata={"help": "Hub id, model folder, or 'tiny' (the offline student)"})
    method: Literal["lora", "full"] = _help("lora", "'lora' (peft adapter) or 'full' fine-tuning")
    epochs: float = _help(20, "passes over the training examples (ignored when max_steps is set)")
    max_steps: int | None = _help(None, "optimizer steps to train for; overrides epochs")
    batch_size: int = _help(8, "examples per optimizer step and device (times grad_accum)")
    learning_rate: float = _help(3e-4, "peak AdamW learning rate")
    warmup: float = _help(0.0, "share of the steps spent warming the learning rate up, in [0, 1)")
    scheduler: str = _help("linear", f"learning-rate decay after warm-up: {', '.join(SCHEDULERS)}")
    weight_decay: float = _help(0.0, "AdamW weight decay")
    max_length: int = _help(1024, "token cap per example (seq2seq: on the input and on the labels)")
    seed: int = _help(0, "seed for weights of new layers, data order and the validation split")
    precision: Literal["auto", "bf16", "fp32"] = _help("auto", "'auto' = bf16 where fast")
    lora_r: int = _help(16, "LoRA rank")
    lora_alpha: int = _help(32, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = _help(0.05, "dropout on the LoRA branch")
    val_fraction: float = _help(0.0, "share of records held out to pick the best epoch, [0, 0.5]")
    save_every_epoch: bool = _help(True, "checkpoint each epoch (one is always saved at the end)")
    grad_accum: int = _help(1, "micro-batches accumulated per optimizer step")
    shuffle: bool = _help(
        True,
        "shuffle into length-grouped batches each epoch; False = the records in order (sequential "
        "batches, e.g. to compare a multi-process run with a single-process one)",
    )
    logging_steps: int = _help(1, "report loss and progress every this many steps")
    kind: Literal["auto", "causal", "seq2seq"] = _help(
        "auto", "architecture the recipe is for; a student of the other kind is refused"
    )
    tiny_layers: int = _help(4, "tiny student only: transformer layers")
    tiny_width: int = _help(128, "tiny student only: hidden size (a multiple of 4 heads)")
    tiny_tokenizer: Literal["words", "bytes"] = _help(
        "words",
        "tiny student only: 'words' = bytes plus one token per template word of the training "
        "text (half the length; letters and names stay bytes); 'bytes' = bytes only",
    )

    def __post_init__(self) -> None:
        checks = [
            (
                bool(str(self.student).strip()),
                "student is empty: give a Hub id, a folder or 'tiny'",
            ),
            (
                self.method in ("lora", "full"),
                f"method must be 'lora' or 'full', not {self.method!r}",
            ),
            (self.epochs > 0, f"epochs must be > 0 (got {self.epochs}); e.g. 20 as in the paper"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1, or None"),
            (self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size}); e.g. 8"),
            (self.learning_rate > 0, f"learning_rate must be > 0 (got {self.learning_rate})"),
            (0 <= self.warmup < 1, f"warmup is a ratio in [0, 1) (got {self.warmup}); e.g. 0.05"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})"),
            (self.max_length >= 8, f"max_length must be >= 8 tokens (got {self.max_length})"),
            (self.precision in ("auto", "bf16", "fp32"), "precision must be auto, bf16 or fp32"),
            (self.lora_r >= 1 and self.lora_alpha >= 1, "lora_r and lora_alpha must be >= 1"),
            (0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1) ({self.lora_dropout})"),
            (
                0 <= self.val_fraction <= 0.5,
                f"val_fraction must be in [0, 0.5] ({self.val_fraction})",
            ),
            (self.grad_accum >= 1, f"grad_accum must be >= 1 (got {self.grad_accum})"),
            (self.logging_steps >= 1, f"logging_steps must be >= 1 (got {self.logging_steps})"),
            (self.kind in ("auto", "causal", "seq2seq"), "kind must be auto, causal or seq2seq"),
            (
                self.tiny_layers >= 1 and self.tiny_width >= 4 and self.tiny_width % 4 == 0,
                "tiny_layers must be >= 1 and tiny_width a positive multiple of 4",
            ),
            (self.tiny_tokenizer in ("words", "bytes"), "tiny_tokenizer must be words or bytes"),
            (
                not (self.student == "tiny" and self.kind == "seq2seq"),
                "the tiny student is causal (GPT-2): use kind='causal' or 'auto' with it",
            ),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise UserError("bad training settings: " + "; ".join(problems))


#: The paper's open-student settings (METHOD.md step 3): AdamW 3e-4, batch 8, 20 epochs, full
#: fine-tuning, 1,024 tokens. Add "student" (and method="lora" for a cheaper run).
PAPER_RECIPE: dict[str, Any] = {
    "method": "full",
    "learning_rate": 3e-4,
    "batch_size": 8,
    "epochs": 20,
    "scheduler": "linear",
    "max_length": 1024,
}

#: The tiny offline student (0.9M-parameter GPT-2, byte tokens): these settings let it learn last
#: letter concatenation in ~1,000-2,000 steps on 2 CPU cores (issue 4's experiment).
TINY_RECIPE: dict[str, Any] = {
    "student": "tiny",
    "kind": "causal",
    "method": "full",
    "learning_rate": 3e-3,
    "batch_size": 16,
    "warmup": 0.05,
    "scheduler": "cosine",
    "max_steps": 2000,
    "max_length": 512,
    "precision": "auto",
}


@dataclass
class TrainResult:
    """What a training run did; also written to `output_dir/train_result.json`."""

    student: str  # as asked ("tiny", a Hub id, a folder)
    base_model: str  # what was loaded (the built tiny folder for "tiny")
    kind: StudentKind
    method: str
    precision: Precision
    train_examples: int
    val_examples: int
    settings: dict[str, Any]
    global_step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0  # non-padding input tokens (seq2seq: encoder inputs) per second
    stopped: bool = False  # cancelled before the end: no final/, resume from last_checkpoint
    resumed_from_step: int | None = None
    final_dir: str | None = None
    last_checkpoint: str | None = None
    selection: str = "last epoch"  # or "last step" (max_steps), or "best validation loss"
    best_checkpoint: str | None = None
    best_eval_loss: float | None = None
    last_loss: float | None = None


def choose_precision(requested: str = "auto") -> Precision:
    """bf16 or fp32 for this machine. "auto" takes bf16 where the hardware runs it well: a CUDA
    device with bf16 support, or a CPU with AVX512-BF16 or AMX (elsewhere bf16 is emulated and
    much slower than fp32)."""
    import torch

    if requested == "fp32":
        return "fp32"
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16"
        if requested == "bf16":
            raise UserError("this GPU does not support bf16: use precision 'auto' or 'fp32'")
        return "fp32"
    if requested == "bf16":  # works on any CPU, slowly without hardware support
        return "bf16"
    return "bf16" if _cpu_has_fast_bf16() else "fp32"


def _cpu_has_fast_bf16() -> bool:
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability()).lower()
    if "amx" in capability or "bf16" in capability:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
