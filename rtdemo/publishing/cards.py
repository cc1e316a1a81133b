"""The model card and the dataset card of a push: YAML metadata the Hub reads, then prose.

    text = model_card(facts, plan, Links("you/student", "you/student-rationales", endpoint))
    text = dataset_card(facts, configs, Links(...), license="mit")

Each card is built with huggingface_hub's card tools (`ModelCardData` with one `EvalResult` per
measured metric, which becomes the `model-index`; `DatasetCardData` with one config per data
folder) and parsed back with `ModelCard` / `DatasetCard` before it is written (`_checked`).
Nothing is stated that was not measured: an unevaluated student has no `model-index`, an
unmeasured teacher or an untrained baseline reads "not measured" / "not trained".
"""

from __future__ import annotations

from dataclasses import dataclass

from rtdemo.publishing.cards_text import (
    CITATION,
    first_d,
    how_taught,
    limitations,
    origin_note,
    results_table,
    source_of,
    teachers_line,
    training_table,
    usage,
)
from rtdemo.publishing.files import FIELDS, Facts, ModelPlan
from rtdemo.tasks import get_task

METRICS = {  # metric id → name on the card; fractions are published as percentages
    "accuracy": "Accuracy",
    "contains_answer": "Contains answer",
    "correct_format": "Correct format",
    "complete": "Complete",
}
TAGS = ["fine-tune-cot", "chain-of-thought", "reasoning", "distillation", "rtdemo"]


@dataclass(frozen=True)
class Links:
    """The repos of a push (None: not published) and the endpoint their pages live on."""

    model: str | None
    dataset: str | None
    endpoint: str = "https://huggingface.co"

    def url(self, kind: str, repo_id: str) -> str:
        """The page of a model or dataset repo."""
        prefix = "datasets/" if kind == "dataset" else ""
        return f"{self.endpoint.rstrip('/')}/{prefix}{repo_id}"

    def md(self, kind: str) -> str:
        """A Markdown link to the model or dataset, or "not published"."""
        repo_id = self.model if kind == "model" else self.dataset
        return f"[{repo_id}]({self.url(kind, repo_id)})" if repo_id else "not published"


def _checked(text: str, kind: str) -> str:
    """`text` parsed back with huggingface_hub's card class: a card it cannot read is our bug."""
    from huggingface_hub import DatasetCard, ModelCard

    card = (ModelCard if kind == "model" else DatasetCard)(text)
    if not card.data.to_dict() or not card.text.strip():
        raise ValueError(f"the {kind} card has no metadata or no text")
    return text


def eval_results(facts: Facts, dataset_type: str):
    """One `EvalResult` per measured metric of the published run (percentages); [] if none."""
    from huggingface_hub import EvalResult

    run = facts.run
    row = next((r for r in facts.results if run and r["who"] == run.name), None)
    if not row or not row["metrics"]:
        return []
    m = row["metrics"]
    fmt = "Fine-tune-CoT" if run.format == "cot" else "vanilla fine-tuning"
    return [
        EvalResult(
            task_type="text-generation",
            task_name=f"{facts.task_name} ({fmt})",
            dataset_type=dataset_type,
            dataset_name=f"{facts.task_name}, test split of experiment {facts.experiment.name} "
            f"({m['count']} questions)",
            dataset_split="test",
            metric_type=metric,
            metric_name=name,
            metric_value=round(100 * m[metric], 2),
        )
        for metric, name in METRICS.items()
        if m.get(metric) is not None
    ]


def _dataset_type(facts: Facts) -> str:
    """The test data's Hub id where it came from the Hub, else the task key."""

    hub = get_task(facts.experiment.task).hub
    if facts.experiment.config.get("source") == "hub" and hub is not None:
        return hub.dataset_id
    return facts.experiment.task


def model_card(facts: Facts, plan: ModelPlan, links: Links, license: str = "unknown") -> str:
    """The student's README.md: metadata, what it is, how it was taught, results, use, limits."""
    from huggingface_hub import ModelCardData

    run = facts.run
    assert run is not None and links.model is not None
    evals = eval_results(facts, _dataset_type(facts))
    relation = {"base_model_relation": "adapter" if plan.adapter else "finetune"}
    data = ModelCardData(
        base_model=plan.base_model,
        datasets=[links.dataset] if links.dataset else None,
        library_name="peft" if plan.adapter else "transformers",
        license=license,
        language="en",
        pipeline_tag="text-generation",
        tags=[*TAGS, facts.experiment.task, *(["lora"] if plan.method == "lora" else [])],
        model_name=links.model.split("/")[-1],
        eval_results=evals or None,
        **(relation if plan.base_model else {}),
    )
    fmt = "Fine-tune-CoT" if run.format == "cot" else "vanilla fine-tuning (the baseline)"
    base = (
        f"[{plan.base_model}]({links.url('model', plan.base_model)})"
        if plan.base_model
        else (
            "the tiny offline student (a GPT-2-architecture model of about 0.9M parameters, "
            "initialised at random by this tool)"
            if run.student == "tiny"
            else f"a local model folder (`{run.student.rsplit('/', 1)[-1]}`), not on the Hub"
        )
    )
    shape = (
        "a LoRA adapter (load it with peft: it fetches the base model from the Hub)"
        if plan.adapter
        else "full weights"
        + (" (its LoRA adapter merged into the base)" if plan.method == "lora" else "")
    )
    note = origin_note(plan)
    body = [
        f"# {links.model.split('/')[-1]}",
        "",
        f"A small **student** model taught to answer {facts.task_name} questions by "
        f"**{fmt}** ([Ho et al., 2023](https://arxiv.org/abs/2212.10071)): a large "
        "**teacher** wrote step-by-step rationales, the ones whose answer was right were kept, "
        "and the student was fine-tuned on them. Made with Reasoning Teacher Studio "
        f"(`rtdemo`), experiment `{facts.experiment.name}`, run `{run.name}`.",
        "",
        f"- **Student:** {base}; published as {shape}.",
        *([f"- **Training base:** {note}"] if note else []),
        f"- **Task:** {facts.task_name} — {facts.task_description} Questions: "
        f"{source_of(facts.experiment)}.",
        f"- **Teacher:** {teachers_line(facts)}.",
        f"- **Training rationales:** {links.md('dataset')}.",
        "",
        "## How it was taught",
        "",
        *how_taught(facts),
        "",
        "### Training settings",
        "",
        *training_table(run, plan),
        "",
        f"## Results (test split, {facts.test_questions} questions)",
        "",
        *results_table(facts),
        "",
        "## How to use it",
        "",
        *usage(facts, plan, links.model),
        "",
        "## Limitations",
        "",
        *limitations(facts, plan),
        "",
        "## Citation",
        "",
        CITATION,
    ]
    return _checked(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n", "model")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def dataset_card(
    facts: Facts, configs: dict[str, dict[str, list[dict]]], links: Links, license: str
) -> str:
    """The rationale dataset's README.md: configs and splits, source, teacher, counts, fields."""
    from huggingface_hub import DatasetCardData

    assert links.dataset is not None
    c = facts.counts
    kept = len(configs["curated"]["train"])
    data = DatasetCardData(
        license=license,
        language=["en"],
        task_categories=["text-generation"],
        tags=[*TAGS, facts.experiment.task, "rationales"],
        size_categories=[_size_category(kept)],
        pretty_name=f"{facts.task_name} rationales for Fine-tune-CoT",
        configs=[
            {
                "config_name": name,
                "data_files": [
                    {"split": split, "path": f"{name}/{split}.jsonl"} for split in splits
                ],
                **({"default": True} if name == "curated" else {}),
            }
            for name, splits in configs.items()
        ],
    )
    d = f" (the first {first_d(facts)} of each question)" if first_d(facts) else ""
    lines = [
        f"# {links.dataset.split('/')[-1]}",
        "",
        f"Step-by-step rationales for {facts.task_name} written by a teacher model with "
        "Zero-shot-CoT, filtered and reviewed for **Fine-tune-CoT** "
        "([Ho et al., 2023](https://arxiv.org/abs/2212.10071)). Made with Reasoning Teacher "
        f"Studio (`rtdemo`), experiment `{facts.experiment.name}`.",
        "",
        f"- **Student trained on it:** {links.md('model')}.",
        f"- **Task:** {facts.task_name} — {facts.task_description} Questions: "
        f"{source_of(facts.experiment, licence=True)}.",
        f"- **Teacher:** {teachers_line(facts)}.",
        "",
        "## How it was made",
        "",
        *how_taught(facts),
        "",
        "## Counts",
        "",
        "| stage | count |",
        "|---|---|",
        f"| training questions | {facts.train_questions} |",
        f"| teacher samples asked for{d} | {facts.generated} |",
        f"| finished (both calls answered) | {c['samples']} |",
        f"| answer correct (pass answer filtering) | {c['correct']} |",
        f"| truncated at the token cap | {c['truncated']} |",
        f"| review: accepted / rejected / edited | {c['accepted']} / {c['rejected']} / "
        f"{c['edited']} |",
        f"| **kept (config `curated`)** | **{kept}**, for {c['questions_kept']} questions |",
        "",
        "## Configs and splits",
        "",
        *[
            f"- `{name}`: "
            + ", ".join(f"`{split}` ({len(rows)} rows)" for split, rows in splits.items())
            + (
                " — the curated set the student learns from (default)"
                if name == "curated"
                else " — every finished teacher sample with its verdicts"
            )
            for name, splits in configs.items()
        ],
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'curated = load_dataset("{links.dataset}", "curated", split="train")',
        "```",
        "",
        "## Fields",
        "",
        "| field | meaning |",
        "|---|---|",
        *[f"| `{name}` | {meaning} |" for name, meaning in FIELDS.items()],
        "",
        "## Citation",
        "",
        CITATION,
    ]
    return _checked(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n", "dataset")
