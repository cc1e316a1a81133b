"""Training: Fine-tune-CoT step 3 — supervised fine-tuning of a student, LoRA or full.

    records = [format_pair(q, r, a, "cot") for q, r, a in kept]        # rtdemo.curation.curate
    settings = TrainSettings(**{**TINY_RECIPE, "max_steps": 1000})      # rtdemo.training.settings
    result = train(records, settings, Path("runs/cot"), on_progress=print)
    model, tokenizer, kind = load_student(result.final_dir, for_training=False)   # evaluation

The loss is next-token loss on the completion only, ending with the student's EOS token, which is
trained even when the tokenizer pads with EOS:

- causal students go through TRL's `SFTTrainer` with a prompt-completion dataset. TRL appends the
  EOS text to each completion, tokenizes prompt and prompt+completion, and builds the labels from
  the completion mask *before* padding; its collator then pads labels with -100 separately from
  the input ids. So the final EOS keeps its label whatever the pad token is (tests check the
  collated batches). Truncation to `max_length` can still cut the EOS off an over-long example.
  A pretrained BPE student (`smollm2-135m`: pad = EOS = `<|im_end|>`, no BOS added) gets the same
  plain-text format, not its chat template. Its prompt ends with " ###" and every completion
  starts with a space, where the byte-level pre-tokenizer always splits, so the tokenized prompt
  is a prefix of the tokenized prompt + completion and the loss starts exactly at the completion
  (tests/models/test_smollm2_student.py checks its collated batches).
- seq2seq students (T5): TRL 1.16's `SFTTrainer` is causal-only (its fused LM head shifts the
  labels by one), so they use the plain `Trainer` with prompt → input ids, completion → labels
  (T5 tokenizers append EOS; added here if a tokenizer does not) and `DataCollatorForSeq2Seq`.

Both: dynamic padding in length-grouped batches, AdamW, a checkpoint each epoch (and at the end,
and on cancel) in `output_dir/checkpoint-N`, bf16 or fp32 decided at run time (`choose_precision`).

Checkpoints, the policy: while a run trains it keeps only its newest checkpoint (and, with a
validation split, the best one too, which `final/` is taken from); once it has finished and written
`final/`, its checkpoints are deleted (`prune_checkpoints`): they only serve to resume an
unfinished run, and each holds the optimizer's state too. A cancelled or failed run keeps its last
checkpoint, so that it resumes. `train(..., keep_checkpoints=True)` keeps them (to continue a
finished run with more steps, as a test does); the app and the CLI never do.

Settings, recipes and `TrainResult` live in `rtdemo.training.settings`; record checks, the
validation split and the batch order in `rtdemo.training.data`; progress, cancel and checkpoints in
`rtdemo.training.callbacks`. This module builds the trainer and runs it (`build_trainer`, `train`).

Output folder:

    output_dir/base/               the tiny student as built (student="tiny" only)
    output_dir/checkpoint-N/       the newest checkpoint (model, optimizer, scheduler, RNG),
                                   until the run finishes
    output_dir/final/              the trained student: full weights, or the LoRA adapter
    output_dir/train_result.json   `TrainResult` as JSON

A LoRA `final/` holds only the adapter and the tokenizer;
`rtdemo.students.loading.load_student(final)` loads the base model its `adapter_config.json` names
and merges the adapter for inference.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from rtdemo.errors import UserError
from rtdemo.students.loading import StudentKind, build_tiny_student, load_student, student_origin
from rtdemo.training.callbacks import (
    Progress,
    distributed_state,
    is_main_process,
    last_checkpoint,
    progress_callback,
    prune_checkpoints,
    synced,
)
from rtdemo.training.data import check_records, epoch_seeded, preflight, split_validation
from rtdemo.training.settings import (
    RESULT_NAME,
    Precision,
    TrainResult,
    TrainSettings,
    choose_precision,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback


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
        "save_total_limit": 1,  # the newest (with validation, the best is kept as well)
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
            epoch_seeded(SFTTrainer)(
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
        epoch_seeded(Trainer)(
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
    keep_checkpoints: bool = False,
) -> TrainResult:
    """Fine-tune `settings.student` on prompt-completion `records` into `output_dir`.

    `resume=True` continues from the last checkpoint in `output_dir` (global step, optimizer,
    scheduler, RNG and data order), or starts afresh if there is none. `on_progress` receives
    `{"step", "total", "epoch", "loss", "learning_rate", "tokens_per_second", "eta"}` (eta in
    seconds) every `logging_steps`. `should_stop()` is polled between phases and after every
    (micro-)step: once True, the run saves a checkpoint and returns `stopped=True`, no `final/`.
    `val_records` (else `settings.val_fraction`) turns on per-epoch validation and keeps the best.
    A finished run deletes its checkpoints (module docstring) unless `keep_checkpoints`; its
    result's `last_checkpoint` is then None (`best_checkpoint` still names the best epoch's).
    """
    output_dir = Path(output_dir)
    _quiet_libraries()
    # one of several data-parallel processes (rtdemo.training.launch)
    distributed = distributed_state()
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
    origin = student_origin(settings.student)  # smollm2-135m: a dequantized copy, said so
    result.base_description = origin["description"] if origin else None
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
    if not callback.stopped and not keep_checkpoints and trainer.is_world_process_zero():
        prune_checkpoints(output_dir)
    result.last_checkpoint = last_checkpoint(output_dir)
    result.best_checkpoint, result.best_eval_loss = state.best_model_checkpoint, state.best_metric
    result.last_loss = callback.last_loss
    if state.best_model_checkpoint:
        result.selection = "best validation loss"
    elif settings.max_steps:
        result.selection = "last step"
    return _write(output_dir, result)
