"""What a real small teacher writes, through generation, filtering, review, yield and export.

SmolLM2-135M-Instruct's rationales on Coin Flip (the texts below are what it wrote, raw and
through its chat template, some shortened) are mostly wrong, often cut at the token cap,
sometimes rambling; a small model may also write nothing, or only white space. The fake
OpenAI-compatible server plays them back so that every case is certain
(tests/teachers/test_smollm2_teacher.py runs the real model).
Answers are read by the paper's rule for yes/no (the first yes or no in the answer text); an
empty rationale is never kept for training unless a reviewer accepts it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rtdemo.curation.curate import (
    ReviewFilter,
    bulk_review,
    curate,
    export_jsonl,
    import_jsonl,
    question_yield,
    review,
    review_counts,
    review_queue,
    training_records,
)
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import load_samples
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.ui.review_view import sample_record, yield_rows
from rtdemo.ui.teacher_actions import diversity_note
from rtdemo.workspace.store import Store
from tests.fakes.openai_server import FakeOpenAIServer, prompt_text

KEY = "sk-test"
CAP = 48
# SmolLM2's own rambling (raw continuation at T=0): it counts flips that never happened.
RAMBLING = "".join(f"\n{i}. The coin is flipped again." for i in range(1, 60))
# (call-1 rationale, call-2 answer text, the answer the paper's rule reads, finish of call 1)
WRITES = [
    ("", " no.", "no", "stop"),  # nothing to learn from, even with the right answer
    ("  \n\n ", "", None, "stop"),  # white space, and an empty answer
    (RAMBLING, " 14.\n\nA: The answer is 14.\n", None, "length"),
    (
        "\n1. A coin is heads up.\n2. Ines flips the coin.\n3. Ada does not flip the coin."
        "\n\nSo the answer is no.",
        " no.",
        "no",
        "stop",
    ),
    (
        "Let's break it down step by step.\n\nFirst, we need to consider the coin's behavior.",
        'The answer is "No."',
        "no",
        "stop",
    ),
    ("Let's analyze the situation step by step.", "The coin is still heads up.", None, "stop"),
]


@pytest.fixture
def questions():
    return generate("coin_flip", SyntheticSettings(size=40), "train")[: len(WRITES)]


def test_empty_rambling_and_truncated_rationales_go_through_every_step(tmp_path, questions):
    by_question = {q.question: w for q, w in zip(questions, WRITES, strict=True)}

    def responder(body, endpoint):  # no `choice`: D samples of one text, like a greedy server
        text = prompt_text(body)
        question = text.split("Q: ", 1)[1].split("\nA:", 1)[0]
        rationale, answer, _, _ = by_question[question]
        return answer if "Therefore, the answer is" in text else rationale

    with FakeOpenAIServer(api_key=KEY, responder=responder) as server, Store(tmp_path) as store:
        exp = store.create_experiment("real", "coin_flip")
        store.add_questions(exp.id, questions)
        teacher = OpenAITeacher("fake-model", base_url=server.base_url, api_key=KEY)
        settings = GenerationSettings(samples=2, temperature=0.7, max_tokens=CAP)
        stats = run_generation(
            store, exp, teacher, settings, questions, TASKS["coin_flip"].answer, None
        )
        assert (stats.done, stats.failed) == (12, 0)
        samples = load_samples(store, exp.id)
        gold = {q.index: q.answer for q in questions}
        expected = {q.index: w for q, w in zip(questions, WRITES, strict=True)}
        for s in samples:
            _, _, prediction, finish = expected[s.idx]
            assert (s.prediction, s.rationale_finish, s.answer_finish) == (
                prediction,
                finish,
                "stop",
            )
            assert s.correct == (prediction == gold[s.idx])
        assert stats.truncated == 2  # the rambling one, cut at the cap, both samples

        # Filtering: correct and written; an empty rationale is not a training example.
        curated = curate(store, exp)
        for c in curated:
            written = bool((c.sample.rationale or "").strip())
            assert c.kept == (bool(c.sample.correct) and written)
        empty_right = [
            c for c in curated if not (c.sample.rationale or "").strip() and c.sample.correct
        ]
        assert len(empty_right) == 2  # question 0: nothing written, the right answer
        run = SimpleNamespace(format="cot", filter_answers=True, diverse_samples=2)
        records = training_records(store, exp, run, questions, "causal")
        assert len(records) == sum(c.kept for c in curated)
        assert all(r["completion"].strip() != "--> no" for r in records)
        assert curate(store, exp, filter_answers=False)  # unfiltered: still no empty ones kept
        assert not any(
            c.kept
            for c in curate(store, exp, filter_answers=False)
            if not c.sample.rationale.strip()
        )

        # Review: every filter and bulk action takes them; an accepted empty one is kept.
        for verdict in ("any", "correct", "wrong"):
            for length in ("any", "complete", "truncated"):
                review_queue(store, exp, ReviewFilter(verdict, length, text="coin"))
        counts = review_counts(curated)
        assert counts["truncated"] == 2 and counts["samples"] == 12
        changed, _ = bulk_review(store, exp, ReviewFilter(), "reject_wrong_or_truncated")
        assert changed == sum(not s.correct or s.truncated for s in samples)
        review(store, empty_right[0].sample.id, "accepted")
        kept = {c.sample.id for c in curate(store, exp) if c.kept}
        assert empty_right[0].sample.id in kept and empty_right[1].sample.id not in kept
        assert all(isinstance(sample_record(c)["rationale"], str) for c in curate(store, exp))

        # Yield: per question, with one distinct rationale each (one text twice, empty included).
        y = question_yield(store, exp)
        assert [q["distinct"] for q in y["questions"]] == [1] * len(WRITES)
        assert (
            "all 2 samples of 6 questions at temperature 0.7 are identical"
            in y["diversity_warning"]
        )
        assert [row[-1] for row in yield_rows(curate(store, exp))] == [1] * len(WRITES)
        assert "⚠️" in diversity_note(samples)

        # Export and import round trip: nothing changes.
        path = tmp_path / "all.jsonl"
        assert export_jsonl(store, exp, path, include_all=True) == 12
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert {line["rationale_finish"] for line in lines} == {"stop", "length"}
        assert import_jsonl(store, exp, path)["edits"] == 0
