"""Training data: which records a student may train on, which are held out, in what order.

    kind = preflight(records, settings)            # the student exists, fits the recipe and records
    train_part, val_part = split_validation(records, settings.val_fraction, settings.seed)
    trainer_cls = epoch_seeded(SFTTrainer)         # batch order reproducible when resuming

Records that cannot train the student are refused before any weights load
(`rtdemo.training.trainer.train` runs `preflight`; `check_records` also vets explicit validation
records).
"""

from __future__ import annotations

import random

from rtdemo.errors import UserError
from rtdemo.students.loading import StudentKind, student_kind
from rtdemo.training.settings import TrainSettings


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


def epoch_seeded(trainer_cls: type) -> type:
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
