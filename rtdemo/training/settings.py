"""Training settings and recipes: what a fine-tuning run is asked to do, and what it did.

    from rtdemo.training.settings import TINY_RECIPE, TrainSettings
    settings = TrainSettings(**{**TINY_RECIPE, "max_steps": 1000})   # validated on creation
    result = rtdemo.training.trainer.train(records, settings, Path("runs/cot"))  # -> TrainResult

`TrainSettings` fields carry their type, range and help text (`rtdemo.validation`): recipes, the
`rtdemo train` flags and the Train tab are checked against them; `__post_init__` refuses bad values
with messages that say what to change. `PAPER_RECIPE`, `TINY_RECIPE` and `SMALL_RECIPE` are named
starting points (`rtdemo.training.recipes.settings_for` picks one by name). `TrainResult` is
written as JSON to `output_dir/train_result.json` (`RESULT_NAME`). `choose_precision` decides bf16
or fp32 at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from rtdemo.errors import UserError
from rtdemo.students.loading import StudentKind
from rtdemo.validation import check_fields, setting, typed

Precision = Literal["bf16", "fp32"]
RESULT_NAME = "train_result.json"
Scheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
]
SCHEDULERS: tuple[str, ...] = Scheduler.__args__  # type: ignore[attr-defined]

# Ranges, declared once: recipes, `rtdemo train` flags and the Train tab are checked against them.
Positive = Annotated[float, Field(gt=0)]
AtLeast1 = Annotated[int, Field(ge=1)]
Ratio = Annotated[float, Field(ge=0, lt=1)]


@typed
@dataclass
class TrainSettings:
    """How to fine-tune a student. Validated on creation; messages say what to change.

    The help texts are `rtdemo train`'s (`rtdemo.validation.add_flags`). `batch_size` is the
    global batch: examples per optimizer step of all processes together, times `grad_accum`.
    """

    student: str = setting(help="'tiny' (offline), a Hub id or a folder")
    method: Literal["lora", "full"] = setting("lora", "LoRA adapter or full fine-tuning")
    epochs: Positive = setting(20, "passes over the data", hint="e.g. 20 as in the paper")
    max_steps: AtLeast1 | None = setting(None, "optimizer steps (overrides epochs)")
    batch_size: AtLeast1 = setting(
        8,
        "examples per optimizer step, all processes together (each of --processes N takes batch "
        "size / N)",
        hint="e.g. 8",
    )
    learning_rate: Positive = setting(3e-4, "peak learning rate", hint="e.g. 3.0e-4")
    warmup: Ratio = setting(
        0.0, "share of the steps spent warming the learning rate up", hint="a ratio, e.g. 0.05"
    )
    scheduler: Scheduler = setting("linear", "learning-rate decay after warm-up")
    weight_decay: Annotated[float, Field(ge=0)] = setting(0.0, "AdamW weight decay")
    max_length: Annotated[int, Field(ge=8)] = setting(
        1024, "token cap per example (seq2seq: on the input and on the labels)"
    )
    seed: int = setting(0, "seed for data order and new weights")
    precision: Literal["auto", "bf16", "fp32"] = setting("auto", "auto: bf16 where fast")
    lora_r: AtLeast1 = setting(16, "LoRA rank")
    lora_alpha: AtLeast1 = setting(32, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: Ratio = setting(0.05, "dropout on the LoRA branch")
    val_fraction: Annotated[float, Field(ge=0, le=0.5)] = setting(
        0.0, "hold out this share to pick the best epoch by validation loss"
    )
    save_every_epoch: bool = setting(True, "checkpoint each epoch (one is always saved at the end)")
    grad_accum: AtLeast1 = setting(1, "micro-batches accumulated per optimizer step")
    shuffle: bool = setting(
        True,
        "shuffle into length-grouped batches each epoch; False = the records in order (sequential "
        "batches, e.g. to compare a multi-process run with a single-process one)",
    )
    logging_steps: AtLeast1 = setting(1, "report loss and progress every this many steps")
    kind: Literal["auto", "causal", "seq2seq"] = setting(
        "auto", "architecture the recipe is for; a student of the other kind is refused"
    )
    # Bounded (at most GPT-2 small's shape): the app's visitors choose them, and the model's
    # size, on disk in every checkpoint, grows with layers × width².
    tiny_layers: Annotated[int, Field(ge=1, le=12)] = setting(
        4, "tiny student only: transformer layers (at most 12)"
    )
    tiny_width: Annotated[int, Field(ge=4, le=768, multiple_of=4)] = setting(
        128, "tiny student only: hidden size (a multiple of 4 heads, at most 768)"
    )
    tiny_tokenizer: Literal["words", "bytes"] = setting(
        "words",
        "tiny student only: 'words' = bytes plus one token per template word of the training "
        "text (half the length; letters and names stay bytes); 'bytes' = bytes only",
    )

    def __post_init__(self) -> None:
        check_fields(self, "bad training settings: ")
        if not str(self.student).strip():
            raise UserError(
                "bad training settings: student is empty: give a Hub id, a folder or 'tiny'"
            )
        if self.student == "tiny" and self.kind == "seq2seq":
            raise UserError(
                "bad training settings: the tiny student is causal (GPT-2): use kind='causal' or "
                "'auto' with it"
            )


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

#: A small pretrained student (about 100M parameters, e.g. `smollm2-135m`) on a few CPU cores:
#: LoRA (r 16, alpha 32, dropout 0.05, on every linear layer; the base weights stay as they are)
#: at lr 1e-3, cosine decay after a 5 % warm-up, batch 8, 3 epochs, examples cut at 256 tokens,
#: fp32. Why LoRA: on CPU its step costs about what a full one does (3.7 s at batch 8 × 78 tokens
#: on 2 cores) and it saves little memory (about 390 MiB of 3.4 GiB), but it leaves the base
#: weights as they are (a learning rate this high would move all 135M of them), saves a 20 MB
#: adapter instead of 540 MB and publishes as an adapter of the Hub model. The Fine-tune-CoT
#: examples of the built-in tasks are 90-135 SmolLM2 tokens, so 256 cuts off only outliers (their
#: EOS is then lost), and time and memory grow with the tokens. fp32 whatever the processor: the
#: evaluation is fp32, and a CPU with AMX would otherwise train in bf16 and another CPU in fp32,
#: giving different students from one recipe; `--precision auto` takes bf16 where it is fast (a
#: GPU; an AMX CPU, 1.15× for LoRA). Measured in benchmarks/README.md ("SmolLM2 as the student").
#: Override anything (`--max-steps`, `--method full`: then lower the learning rate, e.g. 5e-5).
SMALL_RECIPE: dict[str, Any] = {
    "method": "lora",
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "learning_rate": 1e-3,
    "batch_size": 8,
    "warmup": 0.05,
    "scheduler": "cosine",
    "epochs": 3,
    "max_length": 256,
    "precision": "fp32",
}


@dataclass
class TrainResult:
    """What a training run did; also written to `output_dir/train_result.json`."""

    student: str  # as asked ("tiny", a Hub id, a folder, a registry name such as smollm2-135m)
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
    # What the base really is when `rtdemo models prepare` made it (`student_origin`), e.g. "a
    # dequantized 4-bit (Q4_1) copy of HuggingFaceTB/SmolLM2-135M-Instruct (...)"; else None.
    base_description: str | None = None


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
