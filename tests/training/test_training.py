"""Training: the trained EOS, LoRA vs full, resume, cancel, validation, seq2seq, bad settings.

Tiny students (2 layers, width 32) and 24 records in the real Fine-tune-CoT format, one torch
thread: every run takes a second or two. Tests that train are marked `slow` (run in CI).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from rtdemo.curation.curate import format_pair
from rtdemo.errors import UserError
from rtdemo.students.loading import build_tiny_student, load_student
from rtdemo.training.settings import PAPER_RECIPE, TINY_RECIPE, TrainSettings, choose_precision
from rtdemo.training.trainer import build_trainer, train
from tests.tiny_models import build_tiny_seq2seq

torch.set_num_threads(1)

WORDS = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"]


def make_records(n: int = 24, student: str = "causal", fmt: str = "cot") -> list[dict]:
    """Last-letter-concatenation examples of varied lengths, formatted by `format_pair`."""
    out = []
    for i in range(n):
        first, last = WORDS[i % len(WORDS)].split()
        question = f'Take the last letters of each words in "{first} {last}" and concatenate them.'
        rationale = (
            f'The last letter of "{first}" is "{first[-1]}". The last letter of "{last}" is '
            f'"{last[-1]}". Concatenating them is "{first[-1]}{last[-1]}".' + " So," * (i % 4)
        )
        out.append(format_pair(question, rationale, first[-1] + last[-1], fmt, student))
    return out


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return build_tiny_student(
        tmp_path_factory.mktemp("student") / "tiny", layers=2, width=32, heads=2, context=256
    )


@pytest.fixture(scope="module")
def t5(tmp_path_factory) -> Path:
    return build_tiny_seq2seq(tmp_path_factory.mktemp("t5") / "t5")


def settings(student: Path | str, **overrides) -> TrainSettings:
    base = {"student": str(student), "method": "full", "batch_size": 8, "precision": "fp32"}
    return TrainSettings(**{**base, **overrides})


# ---- the loss: prompt masked, final EOS trained ------------------------------------------------


def padding(batches: list[list[int]]) -> int:
    return sum(max(batch) - n for batch in batches for n in batch)


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_collated_batches_mask_the_prompt_and_train_the_final_eos(student, tmp_path, pad_is_eos):
    folder = student
    if pad_is_eos:  # a tokenizer without a pad token: load_student pads with EOS
        folder = tmp_path / "no-pad"
        shutil.copytree(student, folder)
        path = folder / "tokenizer_config.json"
        config = json.loads(path.read_text())
        config.pop("pad_token")
        path.write_text(json.dumps(config))
    model, tokenizer, kind = load_student(folder, for_training=True)
    eos = tokenizer.eos_token_id
    assert (tokenizer.pad_token_id == eos) == pad_is_eos
    records = make_records(96)  # enough for several mega-batches of length grouping
    pairs = {(r["prompt"], r["completion"]) for r in records}
    trainer = build_trainer(model, tokenizer, kind, records, settings(folder), tmp_path / "out")
    rows = padded_rows = 0
    lengths: list[list[int]] = []
    for batch in trainer.get_train_dataloader():  # the batches the trainer's collator produces
        ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
        lengths.append(mask.sum(dim=1).tolist())
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())
            start = int((labels[i] != -100).nonzero()[0])
            assert labels[i, n - 1].item() == eos  # the last label is EOS, not -100
            assert (labels[i, :start] == -100).all()  # the prompt is masked
            assert (labels[i, n:] == -100).all()  # and so is the padding
            assert torch.equal(labels[i, start:n], ids[i, start:n])
            text = (tokenizer.decode(ids[i, :start]), tokenizer.decode(ids[i, start : n - 1]))
            assert text in pairs
            if pad_is_eos and n < ids.shape[1]:
                assert (ids[i, n:] == eos).all()  # padded with EOS, yet not trained on
                padded_rows += 1
            rows += 1
    assert rows == len(records)
    assert padded_rows > 0 or not pad_is_eos
    # Length-grouped batches: far less padding than batches in random order.
    flat = [n for batch in lengths for n in batch]
    shuffled = [
        flat[i] for i in torch.randperm(len(flat), generator=torch.Generator().manual_seed(0))
    ]
    random_batches = [shuffled[i : i + 8] for i in range(0, len(shuffled), 8)]
    assert padding(lengths) < 0.5 * padding(random_batches)


def test_seq2seq_labels_end_with_eos(t5, tmp_path):
    model, tokenizer, kind = load_student(t5, for_training=True)
    records = make_records(student="seq2seq")
    trainer = build_trainer(model, tokenizer, kind, records, settings(t5), tmp_path / "out")
    batch = next(iter(trainer.get_train_dataloader()))
    assert "decoder_input_ids" in batch
    for row in batch["labels"]:
        kept = row[row != -100]
        assert kept[-1].item() == tokenizer.eos_token_id
        assert tokenizer.decode(kept[:-1]) in {r["completion"] for r in records}


# ---- LoRA vs full fine-tuning ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_lora_changes_the_adapter_weights_and_leaves_the_base_untouched(request, tmp_path, kind):
    folder = request.getfixturevalue("student" if kind == "causal" else "t5")
    model, tokenizer, loaded = load_student(folder, for_training=True)
    assert loaded == kind
    lora = settings(folder, method="lora", max_steps=4, learning_rate=1e-2, lora_r=2)
    records = make_records(student=kind)
    trainer = build_trainer(model, tokenizer, kind, records, lora, tmp_path / "out")
    assert hasattr(trainer.model, "peft_config"), "LoRA settings did not wrap the model in PEFT"
    params = dict(trainer.model.named_parameters())
    trainable = {n: p.numel() for n, p in params.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable), "a base weight is trainable"
    assert sum(trainable.values()) < 0.25 * sum(p.numel() for p in params.values())
    before = {n: p.detach().clone() for n, p in params.items()}
    trainer.train()
    n_lora = 0
    for name, param in trainer.model.named_parameters():
        if "lora_" in name:
            assert not torch.equal(param, before[name]), f"adapter weight {name} did not change"
            n_lora += 1
        else:
            assert torch.equal(param, before[name]), f"base weight {name} changed"
    assert n_lora > 0


@pytest.mark.slow
def test_full_fine_tuning_learns_and_final_loads_for_evaluation(student, tmp_path):
    from safetensors.torch import load_file

    progress: list[dict] = []
    records = make_records(8)
    result = train(
        records,
        settings(student, max_steps=30, learning_rate=3e-3, scheduler="constant"),
        tmp_path / "run",
        on_progress=progress.append,
    )
    assert result.global_step == 30 and not result.stopped
    assert [p["step"] for p in progress] == list(range(1, 31))
    assert set(progress[0]) == {
        "step", "total", "epoch", "loss", "learning_rate", "tokens_per_second", "eta",
    }  # fmt: skip
    assert progress[-1]["loss"] < 0.6 * progress[0]["loss"]  # memorising 8 examples
    assert result.tokens_per_second > 0
    base = load_file(student / "model.safetensors")
    final = load_file(Path(result.final_dir) / "model.safetensors")
    assert any(not torch.equal(base[k], final[k]) for k in base)  # base weights changed
    saved = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert saved["global_step"] == 30 and saved["precision"] == "fp32"
    assert saved["method"] == "full" and saved["settings"]["learning_rate"] == 3e-3
    _, tokenizer, kind = load_student(result.final_dir, for_training=False)
    assert kind == "causal" and tokenizer.padding_side == "left"


@pytest.mark.slow
def test_lora_final_is_an_adapter_that_load_student_merges(student, tmp_path):
    result = train(
        make_records(),
        settings(student, method="lora", max_steps=3, learning_rate=1e-2),
        tmp_path / "run",
    )
    final = Path(result.final_dir)
    assert (final / "adapter_config.json").is_file() and not (final / "model.safetensors").exists()
    merged, _, kind = load_student(final, for_training=False)
    base, _, _ = load_student(student, for_training=False)
    assert kind == "causal" and not hasattr(merged, "peft_config")  # merged into a plain model
    key = "transformer.h.0.attn.c_attn.weight"
    assert not torch.equal(merged.state_dict()[key], base.state_dict()[key])


# ---- checkpoints: resume and cancel ------------------------------------------------------------


def _optimizer_step(checkpoint: Path) -> int:
    state = torch.load(checkpoint / "optimizer.pt", weights_only=False)["state"]
    return int(next(iter(state.values()))["step"])


@pytest.mark.slow
def test_resume_continues_the_global_step(student, tmp_path):
    from safetensors.torch import load_file

    records, out = make_records(), tmp_path / "run"
    first = train(
        records, settings(student, max_steps=4, scheduler="constant"), out,
        resume=True, keep_checkpoints=True,  # to continue this finished run
    )  # fmt: skip
    assert first.global_step == 4 and first.resumed_from_step is None
    assert (out / "checkpoint-4").is_dir() and _optimizer_step(out / "checkpoint-4") == 4
    steps: list[int] = []
    on_progress = lambda p: steps.append(p["step"])  # noqa: E731
    second = train(
        records, settings(student, max_steps=8, scheduler="constant"), out,
        resume=True, on_progress=on_progress, keep_checkpoints=True,
    )  # fmt: skip
    assert second.global_step == 8 and second.resumed_from_step == 4
    assert steps[0] == 5  # the first step the callback saw
    assert _optimizer_step(out / "checkpoint-8") == 8  # AdamW's state came from checkpoint-4
    # Same weights as one uninterrupted 8-step run: data order and optimizer state were restored.
    straight = train(records, settings(student, max_steps=8, scheduler="constant"), tmp_path / "b")
    a = load_file(Path(second.final_dir) / "model.safetensors")
    b = load_file(Path(straight.final_dir) / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_cancel_stops_within_a_step_saves_and_resume_continues(student, tmp_path):
    records, out = make_records(), tmp_path / "run"
    seen: list[int] = []
    lora = settings(student, method="lora", max_steps=9)
    result = train(
        records, lora, out,
        on_progress=lambda p: seen.append(p["step"]),
        should_stop=lambda: bool(seen) and seen[-1] >= 2,  # after step 2 was reported
    )  # fmt: skip
    assert result.stopped and result.global_step in (2, 3)
    assert result.final_dir is None and not (out / "final").exists()
    assert result.last_checkpoint == str(out / f"checkpoint-{result.global_step}")
    assert json.loads((out / "train_result.json").read_text())["stopped"] is True
    resumed = train(records, lora, out, resume=True)
    assert not resumed.stopped and resumed.global_step == 9
    assert resumed.resumed_from_step == result.global_step


def _checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("checkpoint-*"))


@pytest.mark.slow
def test_a_finished_run_keeps_no_checkpoint_and_a_running_one_only_its_newest(student, tmp_path):
    """The pruning policy (rtdemo.training.trainer): one checkpoint while training (an epoch is
    3 steps here, so 5 epochs save 5 times), none once final/ is written."""
    out = tmp_path / "run"
    seen: list[list[str]] = []
    on_progress = lambda p: seen.append(_checkpoints(out))  # noqa: E731
    result = train(make_records(), settings(student, epochs=5), out, on_progress=on_progress)
    assert result.global_step == 15 and not result.stopped
    assert max(len(names) for names in seen) == 1  # one at a time, while it trained
    assert {n for names in seen for n in names} >= {"checkpoint-3", "checkpoint-12"}
    assert _checkpoints(out) == [] and result.last_checkpoint is None
    assert (out / "final" / "model.safetensors").is_file()
    assert json.loads((out / "train_result.json").read_text())["last_checkpoint"] is None
    load_student(result.final_dir, for_training=False)  # final/ needs no checkpoint


@pytest.mark.slow
def test_a_validated_run_keeps_the_best_while_training_and_nothing_after(student, tmp_path):
    out = tmp_path / "run"
    seen: list[list[str]] = []
    on_progress = lambda p: seen.append(_checkpoints(out))  # noqa: E731
    result = train(
        make_records(), settings(student, epochs=4, val_fraction=0.25), out,
        on_progress=on_progress,
    )  # fmt: skip
    assert result.best_checkpoint and result.selection == "best validation loss"
    assert max(len(names) for names in seen) <= 2  # the newest and the best
    assert _checkpoints(out) == [] and result.last_checkpoint is None


def test_prune_checkpoints_deletes_only_checkpoint_folders(tmp_path):
    from rtdemo.training.callbacks import prune_checkpoints

    for name in ("checkpoint-3", "checkpoint-12", "final", "base", "checkpoint-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"0" * 10)
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    assert prune_checkpoints(tmp_path) == ["checkpoint-12", "checkpoint-3"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["base", "checkpoint-7", "checkpoint-x", "final"]
    assert prune_checkpoints(tmp_path / "absent") == []


def test_cancel_before_training_starts_trains_nothing(student, tmp_path):
    result = train(make_records(), settings(student), tmp_path / "run", should_stop=lambda: True)
    assert result.stopped and result.global_step == 0 and result.final_dir is None


@pytest.mark.slow
def test_cancel_in_a_gradient_accumulation_substep(student, tmp_path):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= 3  # asked at train start, then after the first micro-batch

    result = train(
        make_records(), settings(student, max_steps=5, batch_size=4, grad_accum=2),
        tmp_path / "run", should_stop=should_stop,
    )  # fmt: skip
    assert result.stopped and result.global_step <= 1


# ---- validation split, seq2seq -----------------------------------------------------------------


@pytest.mark.slow
def test_validation_split_picks_the_best_epoch(student, tmp_path):
    result = train(make_records(), settings(student, epochs=2, val_fraction=0.25), tmp_path / "run")
    assert (result.train_examples, result.val_examples) == (18, 6)
    assert result.selection == "best validation loss"
    assert result.best_checkpoint and result.best_eval_loss is not None
    saved = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert saved["selection"] == "best validation loss"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_seq2seq_student_trains(t5, tmp_path, method):
    """LoRA on a seq2seq student saves an adapter (the base stays as it was), full fine-tuning
    saves whole changed weights; both load back as seq2seq models whose weights moved."""
    from safetensors.torch import load_file

    result = train(
        make_records(student="seq2seq"),
        settings(t5, method=method, max_steps=3, learning_rate=1e-2),
        tmp_path / "r",
    )
    assert result.kind == "seq2seq" and result.global_step == 3 and result.method == method
    saved = json.loads((tmp_path / "r" / "train_result.json").read_text())
    assert (saved["kind"], saved["method"]) == ("seq2seq", method)
    final = Path(result.final_dir)
    base = load_file(t5 / "model.safetensors")
    if method == "lora":
        assert (final / "adapter_config.json").is_file(), sorted(os.listdir(final))
        assert not (final / "model.safetensors").exists(), "LoRA saved full model weights"
        config = json.loads((final / "adapter_config.json").read_text())
        assert config["task_type"] == "SEQ_2_SEQ_LM" and config["r"] == 16
        adapter = load_file(final / "adapter_model.safetensors")
        assert adapter and all("lora_" in key for key in adapter), sorted(adapter)[:5]
        assert sum(t.numel() for t in adapter.values()) < sum(t.numel() for t in base.values())
    else:
        assert not (final / "adapter_config.json").exists()
        weights = load_file(final / "model.safetensors")
        assert any(not torch.equal(base[k], weights[k]) for k in base if k in weights)
    model, _, kind = load_student(final, for_training=False)
    assert kind == "seq2seq" and model.config.is_encoder_decoder
    assert not hasattr(model, "peft_config")  # a LoRA adapter is merged for inference
    merged = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"  # a linear layer LoRA adapts
    assert not torch.equal(merged[key], base[key]), "training did not change the model"


# ---- settings, recipes, precision --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be >= 1"),
        ("epochs", 0, "epochs must be > 0"),
        ("learning_rate", 0.0, "learning_rate must be > 0"),
        ("method", "qlora", "method must be 'lora' or 'full'"),
        ("warmup", 1.5, "warmup must be < 1, got 1.5; a ratio"),
        ("val_fraction", 0.9, "val_fraction must be <= 0.5, got 0.9"),
        ("precision", "fp16", "precision must be"),
        ("scheduler", "bogus", "scheduler must be one of"),
        ("max_steps", 0, "max_steps must be >= 1"),
        ("student", " ", "student is empty"),
        ("tiny_width", 4096, "tiny_width must be <= 768, got 4096"),  # disk: layers × width²
        ("tiny_layers", 100, "tiny_layers must be <= 12, got 100"),
    ],
)
def test_bad_settings_say_what_to_change(field, value, message):
    with pytest.raises(UserError, match=message):
        TrainSettings(**{"student": "tiny", field: value})


def test_the_tiny_student_cannot_take_a_seq2seq_recipe():
    with pytest.raises(UserError, match="tiny student is causal"):
        TrainSettings(student="tiny", kind="seq2seq")


def test_bad_inputs_fail_before_loading_anything(student, t5, tmp_path):
    with pytest.raises(UserError, match="no training examples"):
        train([], settings(student), tmp_path / "a")
    with pytest.raises(UserError, match="there is no student folder"):
        train(make_records(), settings(tmp_path / "missing"), tmp_path / "b")
    with pytest.raises(UserError, match="needs network or a local copy"):
        train(make_records(), settings("rtdemo-tests/no-such-student"), tmp_path / "c")
    # A seq2seq model given a causal recipe, or records in the causal format.
    with pytest.raises(UserError, match=r"recipe is for causal students .* seq2seq model"):
        train(make_records(student="seq2seq"), settings(t5, kind="causal"), tmp_path / "d")
    with pytest.raises(UserError, match="records are in the causal format"):
        train(make_records(), settings(t5), tmp_path / "e")
    with pytest.raises(UserError, match="look like the seq2seq format"):
        train(make_records(student="seq2seq"), settings(student), tmp_path / "f")
    assert not any((tmp_path / name).exists() for name in "abcdef")


def test_training_into_a_used_folder_needs_resume(student, tmp_path):
    (tmp_path / "run" / "checkpoint-3").mkdir(parents=True)
    with pytest.raises(UserError, match="resume it"):
        train(make_records(), settings(student), tmp_path / "run")


def test_recipes_are_valid_settings():
    tiny = TrainSettings(**TINY_RECIPE)
    assert (tiny.student, tiny.method, tiny.kind) == ("tiny", "full", "causal")
    assert (tiny.learning_rate, tiny.batch_size, tiny.scheduler) == (3e-3, 16, "cosine")
    assert 0 < tiny.warmup < 0.1
    paper = TrainSettings(**PAPER_RECIPE, student="gpt2")
    assert (paper.learning_rate, paper.batch_size, paper.epochs) == (3e-4, 8, 20)


def test_choose_precision(monkeypatch):
    """Both rules on any machine: CUDA's answers are stubbed, so a GPU machine tests the CPU rule
    and a CPU machine the GPU rule."""
    import rtdemo.training.settings as train_settings

    assert choose_precision("fp32") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU rule
    assert choose_precision("bf16") == "bf16"
    monkeypatch.setattr(train_settings, "_cpu_has_fast_bf16", lambda: True)
    assert choose_precision("auto") == "bf16"
    monkeypatch.setattr(train_settings, "_cpu_has_fast_bf16", lambda: False)
    assert choose_precision("auto") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU rule
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("auto") == choose_precision("bf16") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision("auto") == "fp32"
    with pytest.raises(UserError, match="this GPU does not support bf16"):
        choose_precision("bf16")
    assert choose_precision("fp32") == "fp32"
