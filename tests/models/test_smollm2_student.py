"""SmolLM2-135M-Instruct (`smollm2-135m`, the prepared dequantized copy) as the student: its
tokenizer in the Fine-tune-CoT loss, LoRA and full fine-tuning, evaluation, publishing.

The real model is slow on a CPU (one LoRA step of 4 examples × ~60 tokens takes several seconds
on one thread), so the module trains it once: a workspace with 5 synthetic two-word Last Letter
questions (4 train, 1 test), greedy built-in-teacher rationales, and one LoRA run of 3 steps at
batch 4 (each step sees the whole training set, so each logged loss is the set's loss), evaluated
on the test split. The tests read that run; one more trains a full fine-tuning for 2 steps on the
short vanilla format. The tokenizer checks use the real tokenizer with a one-layer Llama.

    .venv/bin/python -m pytest tests/models/test_smollm2_student.py
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch

from rtdemo.curation.curate import format_pair
from rtdemo.workspace.store import Store
from tests.fakes.hub_server import TOKEN, FakeHubServer

torch.set_num_threads(1)

NAME = "smollm2-135m"
HUB_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
COPY = "dequantized 4-bit (Q4_1) copy of HuggingFaceTB/SmolLM2-135M-Instruct"
TASK = "last_letter_concatenation"
SIZE = 5  # 4 train, 1 test (the paper's 70/30 split)
STEPS = 3
CAP = 56  # prompt + answer tokens at evaluation (prompts are ~22 tokens)
ADAPTER_FILES = {
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "chat_template.jinja",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


@dataclass(frozen=True)
class Trained:
    workspace: Path
    final: Path
    losses: list[float]
    outputs: list[str]  # the evaluation's outputs on the test split, in question order


def _experiment(store: Store):
    from rtdemo.generation.run import GenerationSettings, run_generation
    from rtdemo.tasks import SourceOptions, get_task, load_examples
    from rtdemo.tasks.synthetic import SyntheticSettings
    from rtdemo.teachers.builtin import BuiltinTeacher

    options = SourceOptions(synthetic=SyntheticSettings(seed=0, size=SIZE, length=2))
    argv = ["--source", "synthetic", "--seed", "0", "--size", str(SIZE), "--length", "2"]
    exp = store.create_experiment(
        "letters", TASK, config={"source": "synthetic", "source_argv": argv}
    )
    train_q = load_examples(TASK, "train", "synthetic", options)
    test_q = load_examples(TASK, "test", "synthetic", options)
    store.add_questions(exp.id, train_q + test_q)
    teacher = BuiltinTeacher(error_rate=0.0)
    answer = get_task(TASK).answer
    run_generation(store, exp, teacher, GenerationSettings(), train_q + test_q, answer, None)
    return exp, train_q, test_q


def _train_run(store, exp, train_q, name: str, fmt: str, overrides: dict, on_progress=None):
    """Train run `name` of `exp` on smollm2-135m with the `small` recipe and `overrides`."""
    from rtdemo.curation.curate import training_records
    from rtdemo.pipeline.recipe import RunConfig
    from rtdemo.training.recipes import settings_for
    from rtdemo.training.runs import create_run, finish_run
    from rtdemo.training.trainer import train

    settings = settings_for(NAME, "small", overrides)
    records = training_records(store, exp, RunConfig(name, fmt), train_q, "causal")
    run = create_run(
        store, exp, name, fmt, 1, NAME, settings.method, len(records), asdict(settings)
    )
    result = train(records, settings, run.output_dir, on_progress=on_progress)
    return finish_run(store, run, asdict(result)), result


@pytest.fixture(scope="module")
def trained(smollm2_folder, tmp_path_factory) -> Trained:
    """The module's workspace and its LoRA run (read-only for the tests: copy to change it)."""
    from rtdemo.evaluation.evaluate import evaluate, save_eval
    from rtdemo.tasks import get_task
    from rtdemo.training.runs import save_evaluation

    workspace = tmp_path_factory.mktemp("smollm2") / "workspace"
    losses: list[float] = []
    with Store(workspace) as store:
        exp, train_q, test_q = _experiment(store)
        overrides = {"max_steps": STEPS, "batch_size": 4, "learning_rate": 2e-3}
        overrides |= {"warmup": 0.0, "scheduler": "constant"}
        run, result = _train_run(
            store, exp, train_q, "lora", "cot", overrides, lambda p: losses.append(p["loss"])
        )
        ev = evaluate(result.final_dir, test_q, get_task(TASK).answer, "cot", max_total_length=CAP)
        folder = save_eval(ev, run.output_dir / "evaluation-test")
        metrics = ev.metrics.to_dict()
        save_evaluation(store, exp, "lora", "test", metrics, folder / "predictions.jsonl", run)
    return Trained(workspace, Path(result.final_dir), losses, [p["output"] for p in ev.predictions])


@pytest.fixture
def workspace(trained: Trained, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(trained.workspace, copy)
    return copy


def _test_questions(workspace: Path):
    with Store(workspace) as store:
        return store.questions(store.get_experiment("letters").id, "test")


def _evaluated(model_folder: Path, workspace: Path) -> list[str]:
    """The outputs of the student in `model_folder` on the test split, evaluated as the run was."""
    from rtdemo.evaluation.evaluate import evaluate
    from rtdemo.tasks import get_task

    questions = _test_questions(workspace)
    result = evaluate(model_folder, questions, get_task(TASK).answer, "cot", max_total_length=CAP)
    return [p["output"] for p in result.predictions]


def _push(workspace: Path, *args: str, endpoint: str | None = None) -> tuple[int, str, str]:
    from tests.publishing.test_hub_push import cli

    return cli(workspace, *args, endpoint=endpoint)


# ---- the tokenizer in the loss: no BOS, prompt a token prefix, the final EOS trained -------------


def test_the_prompt_is_a_token_prefix_and_the_final_eos_is_trained(smollm2_folder, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rtdemo.training.settings import TrainSettings
    from rtdemo.training.trainer import build_trainer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder)
    eos = tokenizer.eos_token_id
    assert (tokenizer.eos_token, eos, tokenizer.pad_token_id) == ("<|im_end|>", 2, 2)  # pad = EOS
    # The real tokenizer with a one-layer Llama of its vocabulary: the collation is the tokenizer's.
    config = LlamaConfig.from_pretrained(smollm2_folder)
    config.num_hidden_layers, config.hidden_size, config.intermediate_size = 1, 64, 128
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 2, 1, 32
    model = LlamaForCausalLM(config)
    q = 'Take the last letters of each words in "Ada Lovelace" and concatenate them.'
    records = [
        # Completions that start with a quote, a digit, punctuation, or repeat the prompt's "###":
        # where byte-level BPE could merge across the prompt/completion boundary.
        format_pair(q, 'The last letter of "Ada" is "a". Then "e". So "ae".', "ae", "cot"),
        format_pair(q, '"Ada" ends in "a", "Lovelace" in "e".', "ae", "cot"),
        format_pair("How many legs do 3 cats have?", "", "12", "vanilla"),
        format_pair("Is the coin still heads up?", "", "no", "vanilla"),
        format_pair("What follows ###?", "### is the delimiter: nothing.", "nothing", "cot"),
        format_pair("Count: 1, 2, 3", "...then 4.", "4", "cot"),
    ]
    settings = TrainSettings(student=str(smollm2_folder), batch_size=3, precision="fp32")
    trainer = build_trainer(model, tokenizer, "causal", records, settings, tmp_path / "out")
    pairs = {(r["prompt"], r["completion"]) for r in records}
    rows = padded = 0
    for batch in trainer.get_train_dataloader():
        ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())
            start = int((labels[i] != -100).nonzero()[0])
            prompt, completion = (
                tokenizer.decode(ids[i, :start]),
                tokenizer.decode(ids[i, start : n - 1]),
            )
            assert (prompt, completion) in pairs
            # Evaluation tokenizes the prompt alone (no BOS): the training context is exactly it.
            assert ids[i, :start].tolist() == tokenizer(prompt)["input_ids"]
            assert ids[i, 0].item() != tokenizer.bos_token_id
            assert labels[i, n - 1].item() == eos  # the final EOS is trained...
            assert (labels[i, :start] == -100).all() and (labels[i, n:] == -100).all()
            assert torch.equal(labels[i, start:n], ids[i, start:n])
            padded += int(n < ids.shape[1])
            assert (ids[i, n:] == eos).all()  # ...though the padding is EOS too
            rows += 1
    assert rows == len(records) and padded > 0


# ---- the recipe and what the student is ---------------------------------------------------------


def test_the_small_recipe_is_lora_on_cpu_sized_batches():
    from rtdemo.training.recipes import RECIPES, settings_for

    assert "small" in RECIPES
    s = settings_for(NAME, "small")
    assert (s.method, s.lora_r, s.lora_alpha, s.learning_rate) == ("lora", 16, 32, 1e-3)
    assert (s.batch_size, s.max_length, s.precision, s.epochs, s.max_steps) == (
        8, 256, "fp32", 3, None,
    )  # fmt: skip
    assert settings_for(NAME, "small", {"max_steps": 40}).max_steps == 40
    full = settings_for(NAME, "small", {"method": "full", "learning_rate": 5e-5})
    assert (full.method, full.learning_rate) == ("full", 5e-5)


def test_student_origin_says_what_a_prepared_model_really_is(smollm2_folder, tmp_path):
    from rtdemo.students.loading import build_tiny_student, student_origin

    expected = {
        "name": NAME,
        "base_model": HUB_BASE,
        "conversion": "dequantized from 4-bit (Q4_1) to float32",
    }
    by_name, by_folder = student_origin(NAME), student_origin(smollm2_folder)
    for origin in (by_name, by_folder):
        assert {k: origin[k] for k in expected} == expected
        assert COPY in origin["description"]
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(smollm2_folder), "task_type": "CAUSAL_LM"})
    )
    assert student_origin(adapter) == by_folder  # an adapter: its base's
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "gpt2"}))
    tiny = build_tiny_student(tmp_path / "tiny", layers=1, width=8, heads=2, context=16)
    for other in ("tiny", "gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", tiny, adapter):
        assert student_origin(other) is None, other


# ---- LoRA: trains the adapter only, lowers the loss; evaluation batched == one at a time --------


@pytest.mark.slow
def test_lora_training_changes_only_the_adapter_and_lowers_the_loss(trained, smollm2_folder):
    from safetensors import safe_open

    from rtdemo.students.loading import load_student

    assert len(trained.losses) == STEPS
    # Each step trains on the whole set (batch 4 = 4 examples): its loss is the set's loss.
    assert trained.losses[-1] < 0.75 * trained.losses[0], trained.losses
    result = json.loads((trained.final.parent / "train_result.json").read_text())
    assert (result["student"], result["method"], result["precision"]) == (NAME, "lora", "fp32")
    assert COPY in result["base_description"]
    model, _, kind = load_student(trained.final, for_training=True)
    assert kind == "causal" and hasattr(model, "peft_config")
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    # Every linear layer of the 30 blocks has an adapter (q k v o, gate up down) ...
    assert len(lora) == 30 * 7 * 2
    # ... which training moved (lora_B starts at zero) ...
    assert all(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    # ... while every base weight is still the prepared folder's.
    with safe_open(str(smollm2_folder / "model.safetensors"), "pt") as saved:
        names = set(saved.keys())
        base = {n: p for n, p in model.named_parameters() if "lora_" not in n}
        for name, param in base.items():
            key = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert key in names, key
            assert torch.equal(param, saved.get_tensor(key)), name
    assert len(base) == len(names) - ("lm_head.weight" in names)  # lm_head is tied to embeddings


@pytest.mark.slow
def test_the_trained_adapter_answers_the_same_batched_and_one_at_a_time(trained):
    from rtdemo.evaluation.evaluate import generate, student_prompt
    from rtdemo.students.loading import load_student

    model, tokenizer, kind = load_student(trained.final, for_training=False)
    assert (tokenizer.padding_side, model.dtype) == ("left", torch.float32)
    with Store(trained.workspace) as store:
        questions = store.questions(store.get_experiment("letters").id)
    prompts = [student_prompt(q.question, kind) for q in questions[:4]]
    lengths = {len(tokenizer(p)["input_ids"]) for p in prompts}
    assert len(lengths) > 1  # prompts of different lengths: the batch is left-padded
    batched = generate(model, tokenizer, kind, prompts, batch_size=4, max_new_tokens=20)
    alone = [generate(model, tokenizer, kind, [p], max_new_tokens=20)[0] for p in prompts]
    assert batched == alone
    assert all(g.new_tokens > 0 and g.text.strip() for g in batched)


@pytest.mark.slow
def test_the_evaluation_records_what_the_student_is(trained):
    from rtdemo.evaluation.evaluate import load_eval

    ev = load_eval(trained.final.parent / "evaluation-test")
    assert ev.complete and ev.total == 1 and len(ev.predictions) == 1
    assert ev.settings["max_total_length"] == CAP and ev.settings["kind"] == "causal"
    assert COPY in ev.settings["base_description"]
    prediction = ev.predictions[0]
    assert prediction["output"] == trained.outputs[0] and prediction["new_tokens"] > 0
    assert prediction["finish_reason"] in ("stop", "length")


# ---- publishing: the adapter names the Hub model; the card says what was trained -----------------


@pytest.mark.slow
def test_the_publish_dry_run_names_the_hub_base_and_the_dequantized_copy(
    workspace, tmp_path, monkeypatch
):
    from huggingface_hub import ModelCard

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    out_dir = tmp_path / "preview"
    code, out, err = _push(
        workspace, "--repo-id", "you/letters", "--what", "model", "--dry-run",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    # The listing: every file the push would upload, with its size.
    assert f"dry run: the files a push would upload, in {out_dir}" in out
    assert f"model → you/letters  ({out_dir / 'model'})" in out
    folder = out_dir / "model"
    for name in ADAPTER_FILES:
        assert f"    {name:48} {(folder / name).stat().st_size:>12,} bytes" in out, name
    assert {p.name for p in folder.iterdir()} == ADAPTER_FILES  # an adapter, no full weights

    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_BASE  # not the local cache folder
    assert str(Path.home()) not in (folder / "adapter_config.json").read_text()
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert (data["base_model"], data["base_model_relation"]) == (HUB_BASE, "adapter")
    assert data["library_name"] == "peft" and "lora" in data["tags"]
    text = card.text
    for needle in (
        f"[{HUB_BASE}](https://huggingface.co/{HUB_BASE}); published as a LoRA adapter",
        f"- **Training base:** trained and evaluated on a {COPY}",
        "not on the original weights of HuggingFaceTB/SmolLM2-135M-Instruct",
        "it is not exactly the model evaluated here",
        f"`rtdemo models prepare {NAME}` makes the same copy",
        f"| base weights | {NAME}: a {COPY}",
        "AutoPeftModelForCausalLM",
        'model = PeftModel.from_pretrained(base, "you/letters")',
        f"- Its base was a {COPY}",
        "every figure here was measured on that copy",
        "| method | LoRA |",
        "| LoRA | r 16, alpha 32 |",
        "| precision | fp32 |",
    ):
        assert needle in text, needle


@pytest.mark.slow
def test_the_pushed_adapter_is_the_evaluated_student_on_the_prepared_copy(
    workspace, trained, smollm2_folder, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with FakeHubServer(tmp_path / "hub") as hub:
        code, out, err = _push(
            workspace, "--repo-id", "tester/smol", "--what", "model", endpoint=hub.url
        )
        assert code == 0, err
        assert f"published model tester/smol: {hub.url}/tester/smol" in out
        repo = hub.repo("model", "tester/smol")
        assert set(repo.files) == ADAPTER_FILES and repo.private
        assert repo.lfs["adapter_model.safetensors"].via == "xet"
        arrived = hub.folder("model", "tester/smol")
        assert hub.handler_errors == []
        # The adapter is the trained one, byte for byte ...
        weights = (arrived / "adapter_model.safetensors").read_bytes()
        assert weights == (trained.final / "adapter_model.safetensors").read_bytes()
        # ... and on the copy it was trained on it answers exactly as evaluated (the Hub's base,
        # the original weights, cannot be downloaded here; the card says they differ).
        copy = tmp_path / "adapter"
        shutil.copytree(arrived, copy)
        config = json.loads((copy / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == HUB_BASE
        config["base_model_name_or_path"] = str(smollm2_folder)
        (copy / "adapter_config.json").write_text(json.dumps(config))
    assert _evaluated(copy, workspace) == trained.outputs


@pytest.mark.slow
def test_merged_publishes_full_weights_merged_into_the_dequantized_copy(
    workspace, trained, tmp_path
):
    from huggingface_hub import ModelCard
    from safetensors import safe_open

    out_dir = tmp_path / "merged"
    code, out, err = _push(
        workspace, "--repo-id", "you/letters", "--what", "model", "--merged", "--dry-run",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    folder = out_dir / "model"
    files = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    assert "model.safetensors" in out
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        names = weights.keys()  # a safetensors file, not a dict
        assert names and not any("lora_" in k for k in names)
        assert weights.get_tensor("model.norm.weight").dtype == torch.float32
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert (data["base_model"], data["base_model_relation"]) == (HUB_BASE, "finetune")
    assert data["library_name"] == "transformers"
    assert f"its LoRA adapter was trained and evaluated on a {COPY}" in card.text
    assert "is merged into that copy here" in card.text
    assert "its LoRA adapter merged into the base" in card.text
    assert _evaluated(folder, workspace) == trained.outputs  # what was evaluated


# ---- full fine-tuning ----------------------------------------------------------------------------


@pytest.mark.slow
def test_full_fine_tuning_trains_every_weight_and_publishes_as_a_finetune(
    workspace, smollm2_folder
):
    from safetensors import safe_open

    from rtdemo.publishing import cards
    from rtdemo.publishing import files as hub_files
    from rtdemo.students.loading import load_student
    from rtdemo.training.runs import get_run

    losses: list[float] = []
    with Store(workspace) as store:
        exp = store.get_experiment("letters")
        train_q = store.questions(exp.id, "train")
        overrides = {"method": "full", "max_steps": 2, "batch_size": 4, "learning_rate": 1e-4}
        overrides["save_every_epoch"] = False  # one checkpoint (1.6 GB with AdamW state) is plenty
        run, result = _train_run(
            store, exp, train_q, "full", "vanilla", overrides, lambda p: losses.append(p["loss"])
        )
        assert (result.method, result.global_step, result.precision) == ("full", 2, "fp32")
        assert COPY in result.base_description and len(losses) == 2
        final = Path(result.final_dir)
        with (
            safe_open(str(final / "model.safetensors"), "pt") as new,
            safe_open(str(smollm2_folder / "model.safetensors"), "pt") as old,
        ):
            key = "model.layers.0.self_attn.q_proj.weight"
            assert not torch.equal(new.get_tensor(key), old.get_tensor(key))
        model, _, _ = load_student(final, for_training=False)
        # The tied LM head survives saving: it is the trained embedding matrix.
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

        # Published as a fine-tune of the Hub model, from the dequantized copy, said so.
        run = get_run(store, exp, "full")
        plan = hub_files.model_plan(run)
        assert (plan.adapter, plan.base_model, plan.method) == (False, HUB_BASE, "full")
        facts = hub_files.gather(store, exp, run)
    text = cards.model_card(facts, plan, cards.Links("you/full", None))
    assert f"base_model: {HUB_BASE}" in text and "base_model_relation: finetune" in text
    assert f"- **Training base:** fine-tuned from a {COPY}" in text
    assert "smollm2-135m" not in text.split("---")[1]  # the metadata names the Hub model only
