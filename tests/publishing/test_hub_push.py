"""Publishing to the Hub (`rtdemo push`, `rtdemo.publishing.push`) against a fake Hub on 127.0.0.1.

The module builds one workspace once: 30 synthetic Last Letter questions (21 train, 9 test), the
built-in teacher on both splits, a few review decisions, and three tiny students trained for 3
steps (Fine-tune-CoT full, vanilla full, Fine-tune-CoT LoRA), each evaluated on the test split.
What arrives on the fake Hub is loaded back with transformers, peft and datasets and compared with
the student's own evaluation and the curated rows.

    .venv/bin/python -m pytest tests/publishing/test_hub_push.py
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from rtdemo.workspace.store import Store
from tests.fakes.hub_server import (
    HUB_ENDPOINTS,
    OTHER_TOKEN,
    OTHER_USER,
    PRESIGNED_ENDPOINTS,
    TOKEN,
    FakeHubServer,
    sha256,
)

TASK = "last_letter_concatenation"
SIZE = 30
TEST_Q = 9
MAX_TOTAL = 48  # the students' evaluation cap: 3 steps of training never write their EOS
RUNS = (("cot", "cot", "full"), ("vanilla", "vanilla", "full"), ("lora", "cot", "lora"))
PUBLISHED = {  # what a full (or merged) student repo holds
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}


def build_workspace(workspace: Path, owner: str = "local", runs=RUNS) -> None:
    """An experiment `letters` of `owner` with rationales, reviews and trained, evaluated runs."""
    import torch

    from rtdemo.curation.curate import review, training_records
    from rtdemo.evaluation.evaluate import evaluate, save_eval
    from rtdemo.generation.run import GenerationSettings, run_generation
    from rtdemo.generation.samples import load_samples
    from rtdemo.pipeline.recipe import RunConfig
    from rtdemo.tasks import SourceOptions, get_task, load_examples
    from rtdemo.tasks.synthetic import SyntheticSettings
    from rtdemo.teachers.builtin import BuiltinTeacher
    from rtdemo.training.recipes import settings_for
    from rtdemo.training.runs import create_run, finish_run, save_evaluation
    from rtdemo.training.trainer import train

    torch.set_num_threads(1)
    options = SourceOptions(synthetic=SyntheticSettings(seed=0, size=SIZE, length=2))
    argv = ["--source", "synthetic", "--seed", "0", "--size", str(SIZE), "--length", "2"]
    with Store(workspace) as store:
        config = {"source": "synthetic", "source_argv": argv}
        exp = store.create_experiment("letters", TASK, owner=owner, config=config)
        train_q = load_examples(TASK, "train", "synthetic", options)
        test_q = load_examples(TASK, "test", "synthetic", options)
        store.add_questions(exp.id, train_q + test_q)
        answer = get_task(TASK).answer
        teacher = BuiltinTeacher(error_rate=0.2)
        run_generation(store, exp, teacher, GenerationSettings(), train_q + test_q, answer, None)
        samples = load_samples(store, exp.id, split="train")
        wrong = next(s for s in samples if not s.correct)
        right = [s for s in samples if s.correct]
        review(store, wrong.id, "accepted")  # a reviewer keeps a wrong one...
        review(store, right[0].id, "rejected")  # ...drops a right one...
        review(store, right[1].id, None, "An edited rationale. So the answer is right.")
        for name, fmt, method in runs:
            overrides = {"method": method, "max_steps": 3, "batch_size": 4, "precision": "fp32"}
            overrides |= {"tiny_layers": 1, "tiny_width": 32}
            settings = settings_for("tiny", "tiny", overrides)
            records = training_records(store, exp, RunConfig(name, fmt), train_q, "causal")
            run = create_run(
                store, exp, name, fmt, 1, "tiny", method, len(records), asdict(settings)
            )
            result = train(records, settings, run.output_dir)
            run = finish_run(store, run, asdict(result))
            ev = evaluate(run.output_dir / "final", test_q, answer, fmt, max_total_length=MAX_TOTAL)
            folder = save_eval(ev, run.output_dir / "evaluation-test")
            metrics = ev.metrics.to_dict()
            save_evaluation(store, exp, name, "test", metrics, folder / "predictions.jsonl", run)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The module's workspace, built once (read-only for the tests: they copy it)."""
    workspace = tmp_path_factory.mktemp("published") / "workspace"
    build_workspace(workspace)
    return workspace


@pytest.fixture
def workspace(built: Path, tmp_path: Path) -> Path:
    """A copy of the built workspace for one test (pushes record what they did in it)."""
    copy = tmp_path / "ws"
    shutil.copytree(built, copy)
    return copy


@pytest.fixture
def hub(tmp_path: Path, monkeypatch):
    """A fake Hub; this process may reach it (tests/conftest.py sets HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHubServer(tmp_path / "hub") as server:
        yield server
    assert server.handler_errors == []


def cli(workspace: Path, *args: str, endpoint: str | None = None) -> tuple[int, str, str]:
    """`rtdemo push` in this process (torch is loaded once); exit code, stdout, stderr."""
    import contextlib
    import io

    from rtdemo.cli.main import main

    argv = ["push", "--workspace", str(workspace), "--experiment", "letters", *args]
    argv += ["--endpoint", endpoint] if endpoint else []
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def one_error(stderr: str) -> str:
    """The single `error: ...` line of a failed command (and no traceback)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def predictions(workspace: Path, run: str, owner: str = "local") -> list[dict]:
    """The run's own evaluation predictions (test split)."""
    from rtdemo.training.runs import get_run

    with Store(workspace) as store:
        folder = get_run(store, store.get_experiment("letters", owner), run).output_dir
    path = folder / "evaluation-test" / "predictions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def evaluated_again(model_folder: Path, workspace: Path, owner: str = "local"):
    """The student in `model_folder` answering the experiment's test questions, as evaluated."""
    from rtdemo.evaluation.evaluate import evaluate
    from rtdemo.tasks import get_task

    with Store(workspace) as store:
        test_q = store.questions(store.get_experiment("letters", owner).id, "test")
    return evaluate(model_folder, test_q, get_task(TASK).answer, "cot", max_total_length=MAX_TOTAL)


def stored_metrics(workspace: Path, run: str) -> dict:
    from rtdemo.training.runs import latest_evaluations

    with Store(workspace) as store:
        return latest_evaluations(store, store.get_experiment("letters"))[run]["metrics"]


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def no_token_anywhere(root: Path, token: str = TOKEN) -> None:
    """Nothing under `root` (store, job records, logs, staged files) holds the token."""
    for path in root.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


@pytest.fixture
def token_env(monkeypatch, tmp_path):
    """HF_TOKEN set to the fake Hub's token; no token saved by `hf auth login` is found."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


# -- dry run and cards -----------------------------------------------------------------------------


def test_a_dry_run_writes_the_files_and_cards_and_needs_no_token(workspace, monkeypatch, tmp_path):
    from huggingface_hub import DatasetCard, ModelCard

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    out_dir = tmp_path / "preview"
    code, out, err = cli(workspace, "--repo-id", "you/letters", "--dry-run", "--out", str(out_dir))
    assert code == 0, err
    assert f"dry run: the files a push would upload, in {out_dir}" in out
    assert "model.safetensors" in out and "curated/train.jsonl" in out
    assert set(files_of(out_dir / "model")) == PUBLISHED
    assert set(files_of(out_dir / "dataset")) == {"README.md", "curated/train.jsonl"}

    card = ModelCard.load(out_dir / "model" / "README.md")
    data = card.data.to_dict()
    # The newest Fine-tune-CoT run (LoRA on the tiny student's local base): merged, no base_model.
    assert "base_model" not in data and data["library_name"] == "transformers"
    assert data["datasets"] == ["you/letters-rationales"]  # lineage: the model links the dataset
    assert {"fine-tune-cot", TASK, "lora"} <= set(data["tags"])
    assert data["license"] == "unknown" and data["pipeline_tag"] == "text-generation"
    measured = stored_metrics(workspace, "lora")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {
        k: round(100 * measured[k], 2)
        for k in ("accuracy", "contains_answer", "correct_format", "complete")
    }
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    text = card.text
    for needle in (
        "## How it was taught",
        "Built-in offline teacher",  # the teacher is named
        "accepted 1, rejected 1, edited 1",  # the review
        "| method | LoRA |",
        '`"{question} ###"`',
        "what follows the first `-->`",
        "**this model** (lora)",
        "| vanilla | vanilla baseline | 9 |",
        "teacher: Built-in offline teacher",
        "Ho, Namgyu and Schmid, Laura and Yun, Se-Young",
        "https://huggingface.co/datasets/you/letters-rationales",
    ):
        assert needle in text, needle

    dataset = DatasetCard.load(out_dir / "dataset" / "README.md")
    assert dataset.data.configs[0]["config_name"] == "curated"
    assert "[you/letters](https://huggingface.co/you/letters)" in dataset.text  # links the model
    assert "Built-in offline teacher" in dataset.text and "| `rationale` |" in dataset.text
    assert "licence of the questions: none (generated here" in dataset.text


def test_a_card_claims_nothing_that_was_not_measured(workspace, tmp_path):
    from huggingface_hub import ModelCard

    with Store(workspace) as store, store.transaction() as conn:
        exp = store.get_experiment("letters")
        conn.execute("DELETE FROM evaluations WHERE subject = 'cot'")  # never evaluated
        conn.execute("DELETE FROM samples WHERE experiment_id = ? AND split = 'test'", (exp.id,))
        conn.execute("DELETE FROM student_runs WHERE name = 'vanilla'")
    out_dir = tmp_path / "preview"
    code, _, err = cli(
        workspace, "--repo-id", "you/cot", "--run", "cot", "--what", "model", "--dry-run",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    card = ModelCard.load(out_dir / "model" / "README.md")
    assert "model-index" not in card.content and not card.data.eval_results
    assert "datasets" not in card.data.to_dict()  # no dataset was published: none is linked
    assert "| **this model** (cot) | Fine-tune-CoT | — | not evaluated |" in card.text
    assert (
        "| teacher: not run on the test split yet | teacher (Zero-shot-CoT) | — | not measured"
        in (card.text)
    )
    assert "No vanilla baseline was trained in this experiment" in card.text
    assert "| method | full fine-tuning |" in card.text and "| LoRA |" not in card.text


# -- pushing to the fake Hub -----------------------------------------------------------------------


def test_a_push_arrives_loads_back_and_matches_the_students_own_evaluation(
    workspace, hub, token_env, tmp_path
):
    import datasets
    from huggingface_hub import ModelCard
    from transformers import pipeline

    args = ("--repo-id", "tester/letters", "--all-samples", "--license", "mit")
    code, _, err = cli(
        workspace, *args, "--dry-run", "--out", str(tmp_path / "dry"), endpoint=hub.url
    )
    assert code == 0, err
    code, out, err = cli(workspace, *args, endpoint=hub.url)
    assert code == 0, err
    assert f"published model tester/letters: {hub.url}/tester/letters" in out
    assert (
        f"published dataset tester/letters-rationales: {hub.url}/datasets/tester/letters-rationales"
        in out
    )
    model, dataset = (
        hub.repo("model", "tester/letters"),
        hub.repo("dataset", "tester/letters-rationales"),
    )
    assert model.private and dataset.private  # private by default
    assert (len(model.commits), len(dataset.commits)) == (1, 1)
    # Exactly the files the dry run wrote, byte for byte.
    model_folder = hub.folder("model", "tester/letters")
    dataset_folder = hub.folder("dataset", "tester/letters-rationales")
    assert files_of(model_folder) == files_of(tmp_path / "dry" / "model")
    assert files_of(dataset_folder) == files_of(tmp_path / "dry" / "dataset")
    assert set(model.files) == PUBLISHED
    # The Hub's endpoints saw the user's token; the weights went to xet storage with the
    # short-lived xet token the Hub handed out, and to the presigned upload URL with none.
    hub_calls = [r for r in hub.requests if r.endpoint in HUB_ENDPOINTS]
    assert {r.authorization for r in hub_calls} == {f"Bearer {TOKEN}"}
    others = {r.authorization for r in hub.requests if r.endpoint not in HUB_ENDPOINTS}
    assert others and all(a is None or a.startswith("Bearer xet_") for a in others)
    assert model.lfs["model.safetensors"].via == "xet" and set(dataset.lfs) == set()

    # The student loads back and answers exactly as in its own evaluation (merged LoRA run).
    own = predictions(workspace, "lora")
    again = evaluated_again(model_folder, workspace)
    assert [p["output"] for p in again.predictions] == [p["output"] for p in own]
    assert again.metrics.to_dict() == stored_metrics(workspace, "lora")
    # ...and so does `pipeline("text-generation")` with the prompt format of the card.
    generator = pipeline("text-generation", model=str(model_folder))
    first = own[0]
    text = generator(f"{first['question']} ###", return_full_text=False, max_length=MAX_TOTAL)
    assert text[0]["generated_text"] == first["output"]

    # The dataset loads with `datasets` and holds the curated rows, and every sample.
    curated = datasets.load_dataset(str(dataset_folder), "curated", split="train")
    dry_rows = (tmp_path / "dry" / "dataset" / "curated" / "train.jsonl").read_text().splitlines()
    assert curated.to_list() == [json.loads(line) for line in dry_rows]
    assert len(curated) == 18 and all(curated["kept"])
    assert curated[0]["completion"].startswith(" ") and " --> " in curated[0]["completion"]
    everything = datasets.load_dataset(str(dataset_folder), "all_samples")
    assert (everything["train"].num_rows, everything["test"].num_rows) == (21, TEST_Q)

    # The card's metadata holds the measured numbers; the Hub's validation saw both cards.
    card = ModelCard.load(model_folder / "README.md")
    assert card.data.license == "mit"
    accuracy = next(r for r in card.data.eval_results if r.metric_type == "accuracy")
    assert accuracy.metric_value == round(100 * stored_metrics(workspace, "lora")["accuracy"], 2)
    assert len(hub.validated) == 2 and "model-index" in hub.validated[0]

    # A second push uploads nothing again: no new commit, the same files.
    code, out, err = cli(workspace, *args, endpoint=hub.url)
    assert code == 0, err
    assert "exists already (an earlier push)" in err
    assert (len(model.commits), len(dataset.commits)) == (1, 1)
    assert files_of(model_folder) == files_of(tmp_path / "dry" / "model")
    no_token_anywhere(workspace)


def test_a_later_push_links_what_was_published_before(workspace, hub, token_env, tmp_path):
    from huggingface_hub import ModelCard

    code, _, err = cli(workspace, "--repo-id", "tester/rats", "--what", "dataset", endpoint=hub.url)
    assert code == 0, err
    assert set(hub.repo("dataset", "tester/rats").files) == {"README.md", "curated/train.jsonl"}
    # The student published later links the dataset this experiment published to this Hub...
    args = ("--repo-id", "tester/later", "--what", "model", "--run", "cot", "--dry-run")
    code, _, err = cli(workspace, *args, "--out", str(tmp_path / "a"), endpoint=hub.url)
    assert code == 0, err
    card = ModelCard.load(tmp_path / "a" / "model" / "README.md")
    assert card.data.datasets == ["tester/rats"]
    assert f"[tester/rats]({hub.url}/datasets/tester/rats)" in card.text
    # ...and nothing published elsewhere: another Hub has no such dataset.
    code, _, err = cli(workspace, *args, "--out", str(tmp_path / "b"))
    assert code == 0, err
    assert "datasets" not in ModelCard.load(tmp_path / "b" / "model" / "README.md").data.to_dict()


def test_a_full_run_and_an_adapter_whose_base_is_on_the_hub(workspace, hub, token_env, tmp_path):
    from huggingface_hub import ModelCard

    from rtdemo.training.runs import create_run, finish_run, get_run

    code, _, err = cli(
        workspace, "--repo-id", "tester/cot", "--run", "cot", "--what", "model", endpoint=hub.url
    )
    assert code == 0, err
    folder = hub.folder("model", "tester/cot")
    assert set(files_of(folder)) == PUBLISHED
    again = evaluated_again(folder, workspace)
    assert [p["output"] for p in again.predictions] == [
        p["output"] for p in predictions(workspace, "cot")
    ]

    # A LoRA run whose base is a Hub id: its adapter is published, and loads with peft.
    with Store(workspace) as store:
        exp = store.get_experiment("letters")
        lora = get_run(store, exp, "lora")
        run = create_run(
            store, exp, "hub-lora", "cot", 1, "tester/tiny-base", "lora", 18, lora.settings
        )
        shutil.copytree(lora.output_dir / "final", run.output_dir / "final")
        finish_run(store, run, lora.result)
    config_path = run.output_dir / "final" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    local_base = config["base_model_name_or_path"]
    config_path.write_text(json.dumps({**config, "base_model_name_or_path": "tester/tiny-base"}))
    code, _, err = cli(
        workspace, "--repo-id", "tester/adapter", "--run", "hub-lora", "--what", "model",
        endpoint=hub.url,
    )  # fmt: skip
    assert code == 0, err
    folder = hub.folder("model", "tester/adapter")
    assert set(files_of(folder)) == {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    data = ModelCard.load(folder / "README.md").data.to_dict()
    assert (data["base_model"], data["library_name"]) == ("tester/tiny-base", "peft")
    assert data["base_model_relation"] == "adapter"
    assert "AutoPeftModelForCausalLM" in (folder / "README.md").read_text()
    # Its base cannot be downloaded here: point a copy at the local base, load with peft.
    copy = tmp_path / "adapter"
    shutil.copytree(folder, copy)
    adapter = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(
        json.dumps({**adapter, "base_model_name_or_path": local_base})
    )
    again = evaluated_again(copy, workspace)
    assert [p["output"] for p in again.predictions] == [
        p["output"] for p in predictions(workspace, "lora")
    ]

    # The full run pushed into the same repo later: the adapter's files go (a reader must not
    # find two models), and a file someone added by hand stays.
    hub.repo("model", "tester/adapter").files["NOTES.md"] = b"mine"
    code, _, err = cli(
        workspace, "--repo-id", "tester/adapter", "--run", "cot", "--what", "model",
        endpoint=hub.url,
    )  # fmt: skip
    assert code == 0, err
    assert set(hub.repo("model", "tester/adapter").files) == PUBLISHED | {"NOTES.md"}
    assert set(files_of(folder)) == PUBLISHED  # NOTES.md was never written to the folder

    # --merged: full weights even so (merging needs the base), the Hub base still named.
    from rtdemo.publishing import cards
    from rtdemo.publishing import files as hub_files

    with Store(workspace) as store:
        exp = store.get_experiment("letters")
        run = get_run(store, exp, "hub-lora")
        plan = hub_files.model_plan(run, merged=True)
        facts = hub_files.gather(store, exp, run)
    assert (plan.adapter, plan.base_model, plan.method) == (False, "tester/tiny-base", "lora")
    text = cards.model_card(facts, plan, cards.Links("tester/merged", None, hub.url))
    data = ModelCard(text).data.to_dict()
    assert (data["base_model"], data["base_model_relation"]) == ("tester/tiny-base", "finetune")
    assert data["library_name"] == "transformers"
    assert "its LoRA adapter merged into the base" in text


# -- failures: one clear message each, and a second try that duplicates nothing ----------------


def test_a_wrong_token_is_refused_with_one_message_then_the_right_one_works(
    workspace, hub, token_env, monkeypatch
):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "wrongTokenWrongTokenWrongToken0")
    code, _, err = cli(workspace, "--repo-id", "tester/letters", endpoint=hub.url)
    assert code == 2
    line = one_error(err)
    assert "refused the token (401 Unauthorized: Invalid credentials" in line
    assert "/settings/tokens and set HF_TOKEN" in line and "hf_wrong" not in line
    assert hub.repos == {}
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, _, err = cli(workspace, "--repo-id", "tester/letters", endpoint=hub.url)
    assert code == 0, err
    assert len(hub.repo("model", "tester/letters").commits) == 1


def test_a_taken_name_is_refused_and_another_name_or_update_works(workspace, hub, token_env):
    hub.add_repo("model", "tester/taken", {"README.md": b"someone else's"})
    args = ("--what", "model", "--run", "cot")
    code, _, err = cli(workspace, "--repo-id", "tester/taken", *args, endpoint=hub.url)
    assert code == 2
    line = one_error(err)
    assert "the name tester/taken is taken on http://127.0.0.1" in line
    assert "Choose another repo id, or push into it on purpose (--update" in line
    assert hub.repo("model", "tester/taken").files == {"README.md": b"someone else's"}
    code, _, err = cli(workspace, "--repo-id", "tester/taken-2", *args, endpoint=hub.url)
    assert code == 0, err
    # Pushing into it on purpose: never a private push into a public repo.
    code, _, err = cli(workspace, "--repo-id", "tester/taken", *args, "--update", endpoint=hub.url)
    assert "tester/taken already exists and is public, but this push is private" in one_error(err)
    code, _, err = cli(
        workspace, "--repo-id", "tester/taken", *args, "--update", "--public", endpoint=hub.url
    )
    assert code == 0, err
    assert set(hub.repo("model", "tester/taken").files) == PUBLISHED


# -- large files: the weights travel the way the real Hub makes them travel ---------------------


def test_the_weights_go_through_xet_storage_and_arrive_byte_for_byte(
    workspace, hub, token_env, tmp_path
):
    # huggingface_hub 2.4 uploads large files with hf_xet whenever it is installed (it is, as
    # a dependency): the Hub's preupload says "lfs" for *.safetensors, the client fetches a
    # xet token, uploads xorbs and a shard to the CAS, and the commit names the file by sha256.
    args = ("--repo-id", "tester/weights", "--what", "model", "--run", "cot")
    code, _, err = cli(workspace, *args, "--dry-run", "--out", str(tmp_path / "dry"))
    assert code == 0, err
    code, _, err = cli(workspace, *args, endpoint=hub.url)
    assert code == 0, err
    local = (tmp_path / "dry" / "model" / "model.safetensors").read_bytes()
    repo = hub.repo("model", "tester/weights")
    assert set(repo.lfs) == {"model.safetensors"}  # the JSON and README travel as regular files
    arrived = repo.lfs["model.safetensors"]
    assert (arrived.via, arrived.oid, arrived.size) == ("xet", sha256(local), len(local))
    assert repo.files["model.safetensors"] == local
    assert (hub.folder("model", "tester/weights") / "model.safetensors").read_bytes() == local
    assert [(u.repo_id, u.via) for u in hub.uploads] == [("tester/weights", "xet")]
    assert hub.count("xet_token") == 1 and hub.count("shard") == 1
    assert hub.count("xorb_grant") + hub.count("xorb") >= 1
    assert hub.count("lfs_batch") == 0  # not the classic LFS path


def test_without_hf_xet_the_weights_go_through_classic_lfs(workspace, hub, token_env, tmp_path):
    # HF_HUB_DISABLE_XET=1 (or a platform without an hf_xet wheel): git-LFS batch, a presigned
    # PUT, the verify call, then the commit's lfsFile line.
    from huggingface_hub import constants

    args = ("--repo-id", "tester/lfs", "--what", "model", "--run", "cot")
    code, _, err = cli(workspace, *args, "--dry-run", "--out", str(tmp_path / "dry"))
    assert code == 0, err
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        code, _, err = cli(workspace, *args, endpoint=hub.url)
    assert code == 0, err
    local = (tmp_path / "dry" / "model" / "model.safetensors").read_bytes()
    repo = hub.repo("model", "tester/lfs")
    arrived = repo.lfs["model.safetensors"]
    assert (arrived.via, arrived.oid, arrived.size) == ("lfs", sha256(local), len(local))
    assert repo.files["model.safetensors"] == local and set(repo.lfs) == {"model.safetensors"}
    assert (hub.count("lfs_batch"), hub.count("lfs_upload"), hub.count("lfs_verify")) == (1, 1, 1)
    assert hub.count("xet_token") == 0
    presigned = [r for r in hub.requests if r.endpoint in PRESIGNED_ENDPOINTS]
    assert [r.authorization for r in presigned] == [None]  # the signed URL, not the token


# -- other users' private repos --------------------------------------------------------------------


def test_a_name_taken_by_someone_elses_private_repo_is_refused_and_loses_nothing(
    workspace, hub, token_env
):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    theirs = {"README.md": b"someone's private work", "model.safetensors": b"\0secret weights"}
    hub.add_repo("model", f"{OTHER_USER}/letters", theirs, private=True)
    # Invisible to this user, as on the Hub (404, not 403); its owner sees it.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=TOKEN).repo_info(f"{OTHER_USER}/letters")
    assert HfApi(endpoint=hub.url, token=OTHER_TOKEN).repo_info(f"{OTHER_USER}/letters").private

    args = ("--what", "model", "--run", "cot")
    for extra in ((), ("--update",)):  # --update does not get into someone else's namespace
        code, _, err = cli(
            workspace, "--repo-id", f"{OTHER_USER}/letters", *args, *extra, endpoint=hub.url
        )
        assert code == 2
        line = one_error(err)
        assert line.startswith(f"error: publishing {OTHER_USER}/letters: the token may not write")
        assert "use your own user name or an organisation you can write to" in line
    repo = hub.repo("model", f"{OTHER_USER}/letters")
    assert repo.files == theirs and repo.commits == [] and repo.private
    assert hub.count("preupload") == hub.count("commit") == 0  # nothing was sent
    # The same name in the user's own namespace is free.
    code, _, err = cli(workspace, "--repo-id", "tester/letters", *args, endpoint=hub.url)
    assert code == 0, err
    assert (
        hub.repo("model", "tester/letters").private
        and hub.repo("model", f"{OTHER_USER}/letters").files == theirs
    )


def test_an_org_name_taken_by_a_colleagues_private_repo_needs_update(workspace, hub, token_env):
    # In an organisation both belong to, a colleague made the private repo lab/letters: the Hub
    # answers 409 to create; the push refuses it as taken, and with --update adds its files
    # beside the colleague's.
    hub.add_user("tester", TOKEN, orgs=("lab",))
    hub.add_user("colleague", "hf_" + "colleagueTokenColleagueToken0", orgs=("lab",))
    theirs = {"NOTES.md": b"the colleague's notes"}
    hub.add_repo("model", "lab/letters", theirs, private=True, creator="colleague")
    args = ("--repo-id", "lab/letters", "--what", "model", "--run", "cot")
    code, _, err = cli(workspace, *args, endpoint=hub.url)
    assert code == 2
    line = one_error(err)
    assert f"the name lab/letters is taken on {hub.url}" in line
    assert "Choose another repo id, or push into it on purpose (--update" in line
    repo = hub.repo("model", "lab/letters")
    assert repo.files == theirs and repo.commits == []
    code, _, err = cli(workspace, *args, "--update", endpoint=hub.url)  # private into private
    assert code == 0, err
    assert (
        set(repo.files) == PUBLISHED | {"NOTES.md"} and repo.files["NOTES.md"] == theirs["NOTES.md"]
    )
    assert repo.lfs["model.safetensors"].via == "xet" and repo.commits[-1]["user"] == "tester"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "server_error",
            "failed (500 Internal Server Error: injected fault: server_error): try again",
        ),
        ("drop", "lost the connection to http://127.0.0.1"),
    ],
)
def test_a_failure_half_way_ends_with_one_message_and_a_second_try_duplicates_nothing(
    workspace, hub, token_env, fault, message
):
    hub.fail("create", fault, repo_type="dataset")  # the model arrives, the dataset does not
    code, _, err = cli(workspace, "--repo-id", "tester/letters", endpoint=hub.url)
    assert code == 2
    line = one_error(err)
    assert line.startswith("error: publishing tester/letters-rationales: ") and message in line
    assert "files that already arrived are not uploaded twice" in line
    model = hub.repo("model", "tester/letters")
    assert len(model.commits) == 1 and ("dataset", "tester/letters-rationales") not in hub.repos

    code, _, err = cli(workspace, "--repo-id", "tester/letters", endpoint=hub.url)
    assert code == 0, err
    assert len(model.commits) == 1  # the model was not uploaded again
    assert len(hub.repo("dataset", "tester/letters-rationales").commits) == 1
    assert set(model.files) == PUBLISHED
    no_token_anywhere(workspace)


def test_a_passing_server_error_on_upload_is_retried_by_the_client(workspace, hub, token_env):
    hub.fail("commit", "server_error")
    code, _, err = cli(
        workspace, "--repo-id", "tester/letters", "--what", "model", endpoint=hub.url
    )
    assert code == 0, err
    assert hub.count("commit") == 2 and len(hub.repo("model", "tester/letters").commits) == 1


def test_no_token_offline_and_bad_arguments_say_what_to_do(workspace, hub, token_env, monkeypatch):
    from huggingface_hub import constants

    def error(*args: str, endpoint: str | None = hub.url) -> str:
        code, _, err = cli(workspace, *args, endpoint=endpoint)
        assert code == 2
        return one_error(err)

    monkeypatch.delenv("HF_TOKEN")
    assert "no Hugging Face token: set HF_TOKEN" in error("--repo-id", "tester/x")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE is set" in error("--repo-id", "tester/x")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert "repo id 'no-owner': use OWNER/NAME" in error("--repo-id", "no-owner")
    assert "repo id 'a/b--c'" in error("--repo-id", "a/b--c")
    assert "has no run 'nope' (runs: cot, vanilla, lora)" in error(
        "--repo-id", "a/b", "--run", "nope"
    )
    same = error("--repo-id", "a/b", "--dataset-repo-id", "a/b")
    assert "the model and the dataset need different repo ids" in same
    from rtdemo.curation.curate import curate, set_decisions

    with Store(workspace) as store:
        exp = store.get_experiment("letters")
        set_decisions(store, [c.sample.id for c in curate(store, exp)], "rejected")
    assert "has no kept rationales to publish" in error("--repo-id", "a/b", "--what", "dataset")
    bad_endpoint = error("--repo-id", "a/b", "--endpoint", "ftp://x", endpoint=None)
    assert "--endpoint 'ftp://x': give a URL" in bad_endpoint
    assert hub.requests == []  # nothing reached the Hub
    # Someone else's namespace: the Hub says 403.
    forbidden = error("--repo-id", "someone/x", "--what", "model", "--run", "cot")
    assert "the token may not write there (403 Forbidden" in forbidden
    assert "use your own user name or an organisation you can write to" in forbidden


# -- the command line for real: a subprocess, and a background job -------------------------------


@pytest.mark.slow
def test_the_cli_pushes_in_a_subprocess_and_as_a_background_job(workspace, hub, run_cli, tmp_path):
    import time

    from rtdemo.jobs.files import last_progress, tail_log
    from rtdemo.jobs.runner import get_job

    env = {
        "HF_TOKEN": TOKEN,
        "HF_HUB_OFFLINE": "",  # tests/conftest.py set it for this process: not for a push
        "HF_ENDPOINT": hub.url,  # the convention: no --endpoint flag below
        "HF_HOME": str(tmp_path / "hf-home"),
        "OMP_NUM_THREADS": "1",
        "RTDEMO_JOB_HEARTBEAT_S": "0.2",
    }
    base = ("push", "--workspace", str(workspace), "--experiment", "letters")
    done = run_cli(*base, "--repo-id", "tester/sub", "--what", "model", "--run", "cot", env=env)
    assert done.returncode == 0, done.stderr
    assert f"published model tester/sub: {hub.url}/tester/sub" in done.stdout
    assert set(hub.repo("model", "tester/sub").files) == PUBLISHED

    args = ("--repo-id", "tester/bg-rationales", "--what", "dataset", "--public", "--background")
    done = run_cli(*base, *args, env=env)
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout.split("started job ")[1].split()[0])
    with Store(workspace) as store:
        deadline = time.monotonic() + 120
        while not (job := get_job(store, job_id)).ended and time.monotonic() < deadline:
            time.sleep(0.2)
    assert (job.kind, job.status) == ("push", "done"), (job.error, tail_log(job))
    # The token reached the job through its environment only.
    assert job.env_names == ["HF_TOKEN"] and TOKEN not in json.dumps(job.argv)
    assert job.argv[job.argv.index("--endpoint") + 1] == hub.url  # passed explicitly
    assert last_progress(job)["phase"] == "done"
    result = json.loads((job.run_dir / "push.json").read_text())
    assert [t["repo_id"] for t in result["targets"]] == ["tester/bg-rationales"]
    assert "published tester/bg-rationales" in tail_log(job)
    repo = hub.repo("dataset", "tester/bg-rationales")
    assert not repo.private and set(repo.files) == {"README.md", "curated/train.jsonl"}
    no_token_anywhere(workspace)
