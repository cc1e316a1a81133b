"""Training: Fine-tune-CoT step 3 — supervised fine-tuning of a student, LoRA or full.

    records = [format_pair(q, r, a, "cot") for q, r, a in kept]        # rtdemo.curation
    settings = TrainSettings(**{**TINY_RECIPE, "max_steps": 1000})
    result = train(records, settings, Path("runs/cot"), on_progress=print)
    model, tokenizer, kind = load_student(result.final_dir, for_training=False)   # evaluation

The loss is next-token loss on the completion only, ending with the student's EOS token, which is
trained even when the tokenizer pads with EOS:

- causal students go through TRL's `SFTTrainer` with a prompt-completion dataset. TRL appends the
  EOS text to each completion, tokenizes prompt and prompt+completion, and builds the labels from
  the completion mask *before* padding; its collator then pads labels with -100 separately from
  the input ids. So the final EOS keeps its label whatever the pad token is (tests check the
  collated batches). Truncation to `max_length` can still cut the EOS off an over-long example.
- seq2seq students (T5): TRL 1.16's `SFTTrainer` is causal-only (its fused LM head shifts the
  labels by one), so they use the plain `Trainer` with prompt → input ids, completion → labels
  (T5 tokenizers append EOS; added here if a tokenizer does not) and `DataCollatorForSeq2Seq`.

Both: dynamic padding in length-grouped batches, AdamW, a checkpoint each epoch (and at the end,
and on cancel) in `output_dir/checkpoint-N`, bf16 or fp32 decided at run time (`choose_precision`).

Output folder:

    output_dir/base/               the tiny student as built (student="tiny" only)
    output_dir/checkpoint-N/       the last few checkpoints (model, optimizer, scheduler, RNG)
    output_dir/final/              the trained student: full weights, or the LoRA adapter
    output_dir/train_result.json   `TrainResult` as JSON

A LoRA `final/` holds only the adapter and the tokenizer; `rtdemo.students.load_student(final)`
loads the base model its `adapter_config.json` names and merges the adapter for inference.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rtdemo.errors import UserError
from rtdemo.students import StudentKind, build_tiny_student, load_student, student_kind
from rtdemo.train_callbacks import (
    Progress,
    distributed_state,
    is_main_process,
    last_checkpoint,
    progress_callback,
    synced,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

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


def check_records(records: list[dict], kind: StudentKind) -> None:
    """Refuse records that cannot train this kind of student (empty, malformed, other format)."""
    if not records:
        raise UserError(
            "no training examples: no sample was kept. Generate more samples, accept some in "
            "review, or turn answer filtering off"
        )
    for i, record in enumerate(records):
        prompt, completion = record.get("prompt"), record.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion.strip():
            raise UserError(
                f"training record {i} needs a text 'prompt' and a non-empty 'completion'"
            )
    causal_shaped = all(r["prompt"].rstrip().endswith("###") for r in records)
    if kind == "seq2seq" and causal_shaped:
        raise UserError(
            "these records are in the causal format ('{q} ###' -> ' {r} --> {a}') but the student "
            "is a seq2seq (encoder-decoder) model: format them for seq2seq "
            "(curation.format_pair(..., student='seq2seq')) or choose a causal student"
        )
    if kind == "causal" and not any(r["completion"][:1].isspace() for r in records):
        raise UserError(
            "these records look like the seq2seq format (no '###' prompt, completions without a "
            "leading space) but the student is causal: format them with student='causal'"
        )


def preflight(records: list[dict], settings: TrainSettings) -> StudentKind:
    """Everything that can be checked before a job starts (no weights are loaded): the student
    exists here, its kind matches the recipe, the records fit it. Returns the student's kind."""
    kind: StudentKind = "causal" if settings.student == "tiny" else student_kind(settings.student)
    if settings.kind != "auto" and settings.kind != kind:
        raise UserError(
            f"the recipe is for {settings.kind} students but {settings.student!r} is a {kind} "
            f"model: use a {kind} recipe, or set kind='auto'"
        )
    check_records(records, kind)
    return kind


def split_validation(
    records: list[dict], fraction: float, seed: int
) -> tuple[list[dict], list[dict]]:
    """(train, validation): a seeded random `fraction` of the records held out (at least one)."""
    if fraction <= 0:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(records) * fraction))
    if n_val >= len(records):
        raise UserError(f"val_fraction {fraction} leaves no training examples: lower it")
    held = set(order[:n_val])
    train_part = [r for i, r in enumerate(records) if i not in held]
    return train_part, [r for i, r in enumerate(records) if i in held]


def _student_folder(
    settings: TrainSettings, output_dir: Path, resume: bool, records: list[dict]
) -> str:
    if settings.student != "tiny":
        return settings.student
    folder = output_dir / "base"
    if not (resume and (folder / "config.json").is_file()):
        texts = [r["prompt"] + r["completion"] for r in records]
        build_tiny_student(
            folder, layers=settings.tiny_layers, width=settings.tiny_width, seed=settings.seed,
            texts=texts if settings.tiny_tokenizer == "words" else None,
        )  # fmt: skip
    return str(folder.resolve())


def _training_args(settings: TrainSettings, output_dir: Path, precision: Precision, val: bool):
    """Arguments shared by both trainers (an `SFTConfig` is a `TrainingArguments`)."""
    import torch

    cpu = not torch.cuda.is_available()
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps or -1,
        "per_device_train_batch_size": settings.batch_size,
        "per_device_eval_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.scheduler,
        "warmup_steps": float(settings.warmup),  # a float below 1 is a ratio (transformers 5)
        "weight_decay": settings.weight_decay,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "bf16": precision == "bf16",
        "fp16": False,
        "use_cpu": cpu,
        "activation_checkpointing": not cpu,  # memory is not the limit on CPU; it only slows
        # `group_by_length` before transformers 5
        "train_sampling_strategy": "group_by_length" if settings.shuffle else "sequential",
        "include_num_input_tokens_seen": "non_padding",
        "logging_strategy": "steps",
        "logging_steps": settings.logging_steps,
        # Evaluation needs epoch checkpoints to pick the best one from.
        "save_strategy": "epoch" if settings.save_every_epoch or val else "no",
        "save_total_limit": 3,
        "eval_strategy": "epoch" if val else "no",
        "load_best_model_at_end": val,
        "metric_for_best_model": "eval_loss" if val else None,
        "greater_is_better": False if val else None,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def _lora_config(settings: TrainSettings, kind: StudentKind):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear",  # works across architectures (GPT-2's Conv1D included)
        task_type="SEQ_2_SEQ_LM" if kind == "seq2seq" else "CAUSAL_LM",
    )


def _max_positions(model: PreTrainedModel) -> int | None:
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _epoch_seeded(trainer_cls: type) -> type:
    """`trainer_cls` whose length-grouped batch order depends on (data seed, epoch) only.

    transformers' `LengthGroupedSampler` draws from the global RNG, so a run resumed mid-epoch
    would see other batches than an uninterrupted one; with this, resuming reproduces them.
    """
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeededSampler(LengthGroupedSampler):
        def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:  # called by the trainer before each epoch
            self.epoch = epoch

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return super().__iter__()

    class EpochSeeded(trainer_cls):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                return EpochSeededSampler(sampler.batch_size, sampler.lengths, seed)
            return sampler

    return EpochSeeded


def _quiet_libraries() -> None:
    """No per-step progress bars from datasets/transformers: our progress lines say it all."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _quiet(trainer: Trainer) -> Trainer:
    """Without the trainer's own log printer: progress goes through our callback only."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def build_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    kind: StudentKind,
    train_records: list[dict],
    settings: TrainSettings,
    output_dir: Path,
    *,
    precision: Precision = "fp32",
    val_records: list[dict] | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> Trainer:
    """The configured trainer (TRL `SFTTrainer` for causal students, `Trainer` for seq2seq).

    `train` uses it; tests use it to inspect the batches its collator produces.
    """
    from datasets import Dataset

    val = bool(val_records)
    args = _training_args(settings, output_dir, precision, val)
    positions = _max_positions(model) if kind == "causal" else None
    max_length = min(settings.max_length, positions) if positions else settings.max_length
    columns = ["prompt", "completion"]
    train_set = Dataset.from_list([{c: r[c] for c in columns} for r in train_records])
    val_set = Dataset.from_list([{c: r[c] for c in columns} for r in val_records or []])
    peft_config = _lora_config(settings, kind) if settings.method == "lora" else None
    if kind == "causal":
        from trl import SFTConfig, SFTTrainer

        config = SFTConfig(
            **args,
            max_length=max_length,
            completion_only_loss=True,  # prompt tokens get label -100
            packing=False,  # packing and padding-free need FlashAttention
            padding_free=False,
        )
        return _quiet(
            _epoch_seeded(SFTTrainer)(
                model=model,
                args=config,
                train_dataset=train_set,
                eval_dataset=val_set if val else None,
                processing_class=tokenizer,
                peft_config=peft_config,
                callbacks=callbacks,
            )
        )
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    if peft_config is not None:
        from peft import get_peft_model
        from transformers import set_seed

        set_seed(settings.seed)  # the adapter's initial weights (SFTTrainer does the same)
        model = get_peft_model(model, peft_config)

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list]:
        encoded = tokenizer(batch["prompt"], truncation=True, max_length=max_length)
        targets = tokenizer(text_target=batch["completion"], truncation=True, max_length=max_length)
        eos = tokenizer.eos_token_id
        labels = [
            ids if ids[-1:] == [eos] else [*ids[: max_length - 1], eos]
            for ids in targets["input_ids"]
        ]
        return {**encoded, "labels": labels}

    train_set = train_set.map(tokenize, batched=True, remove_columns=columns)
    val_set = val_set.map(tokenize, batched=True, remove_columns=columns) if val else None
    return _quiet(
        _epoch_seeded(Trainer)(
            model=model,
            args=TrainingArguments(**args),
            train_dataset=train_set,
            eval_dataset=val_set,
            processing_class=tokenizer,
            data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
            callbacks=callbacks,
        )
    )


def _write(output_dir: Path, result: TrainResult) -> TrainResult:
    if not is_main_process():  # one data-parallel process writes the result
        return result
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULT_NAME
    path.with_suffix(".tmp").write_text(json.dumps(asdict(result), indent=2) + "\n")
    os.replace(path.with_suffix(".tmp"), path)
    return result


def train(
    records: list[dict],
    settings: TrainSettings,
    output_dir: Path,
    *,
    resume: bool = False,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    val_records: list[dict] | None = None,
) -> TrainResult:
    """Fine-tune `settings.student` on prompt-completion `records` into `output_dir`.

    `resume=True` continues from the last checkpoint in `output_dir` (global step, optimizer,
    scheduler, RNG and data order), or starts afresh if there is none. `on_progress` receives
    `{"step", "total", "epoch", "loss", "learning_rate", "tokens_per_second", "eta"}` (eta in
    seconds) every `logging_steps`. `should_stop()` is polled between phases and after every
    (micro-)step: once True, the run saves a checkpoint and returns `stopped=True`, no `final/`.
    `val_records` (else `settings.val_fraction`) turns on per-epoch validation and keeps the best.
    """
    output_dir = Path(output_dir)
    _quiet_libraries()
    distributed = distributed_state()  # one of several data-parallel processes (rtdemo.launch)
    stop = synced(should_stop or (lambda: False), distributed)
    kind = preflight(records, settings)
    checkpoint = last_checkpoint(output_dir)
    if checkpoint and not resume:
        raise UserError(
            f"{output_dir} already holds checkpoints of an earlier run: resume it, or train into "
            "an empty folder"
        )
    if val_records is None:
        train_records, val = split_validation(records, settings.val_fraction, settings.seed)
    else:
        train_records, val = list(records), list(val_records)
        if val:
            check_records(val, kind)
    result = TrainResult(
        student=settings.student,
        base_model=settings.student,
        kind=kind,
        method=settings.method,
        precision=choose_precision(settings.precision),
        train_examples=len(train_records),
        val_examples=len(val),
        settings=asdict(settings),
        last_checkpoint=checkpoint,
        stopped=True,  # until training ends
    )
    if stop():
        return _write(output_dir, result)

    # ---- load the student ------------------------------------------------------------------
    output_dir.mkdir(parents=True, exist_ok=True)
    with distributed.main_process_first() if distributed else contextlib.nullcontext():
        built = distributed is not None and not distributed.is_main_process  # by process 0
        result.base_model = _student_folder(settings, output_dir, resume or built, train_records)
    model, tokenizer, _ = load_student(result.base_model, for_training=True)
    if stop():
        return _write(output_dir, result)
    callback = progress_callback(on_progress, stop)
    trainer = build_trainer(
        model, tokenizer, kind, train_records, settings, output_dir,
        precision=result.precision, val_records=val, callbacks=[callback],
    )  # fmt: skip
    if stop():
        return _write(output_dir, result)

    # ---- train -----------------------------------------------------------------------------
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=checkpoint if resume else None)
    result.train_seconds = round(time.monotonic() - started, 3)

    # ---- save ------------------------------------------------------------------------------
    state = trainer.state
    result.stopped = callback.stopped
    if not callback.stopped:
        final_dir = output_dir / "final"
        trainer.model.config.use_cache = True  # the trainer turns the cache off for training
        trainer.save_model(str(final_dir))  # a LoRA model saves its adapter only
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(final_dir)
        result.final_dir = str(final_dir)
    result.global_step, result.max_steps = state.global_step, state.max_steps
    result.epoch = float(state.epoch or 0)
    result.tokens_per_second = round(callback.tokens_per_second(state), 1)
    result.resumed_from_step = callback.start_step if checkpoint and resume else None
    result.last_checkpoint = last_checkpoint(output_dir)
    result.best_checkpoint, result.best_eval_loss = state.best_model_checkpoint, state.best_metric
    result.last_loss = callback.last_loss
    if state.best_model_checkpoint:
        result.selection = "best validation loss"
    elif settings.max_steps:
        result.selection = "last step"
    return _write(output_dir, result)
