"""Curation: answer filtering, reviews on top, the exact training formats, export/import, replay."""

from __future__ import annotations

import json

import pytest

from rtdemo.curation.curate import (
    ReviewFilter,
    bulk_review,
    check_sample,
    curate,
    export_jsonl,
    format_pair,
    import_jsonl,
    question_yield,
    review,
    review_counts,
    review_queue,
    set_decisions,
    to_dataset,
)
from rtdemo.errors import UserError
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import load_samples
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.builtin import BuiltinTeacher
from rtdemo.teachers.replay import ReplayTeacher
from rtdemo.workspace.store import Store

COIN = TASKS["coin_flip"].answer


@pytest.fixture
def generated(tmp_path):
    store = Store(tmp_path / "ws")
    exp = store.create_experiment("e", "coin_flip")
    questions = generate("coin_flip", SyntheticSettings(size=40), "train")
    store.add_questions(exp.id, questions)
    settings = GenerationSettings(samples=3, temperature=0.7)
    run_generation(store, exp, BuiltinTeacher(error_rate=0.3), settings, questions, COIN, None)
    yield store, exp, questions
    store.close()


def test_formats_are_the_papers():
    assert format_pair(" Q? ", " r. ", " 7 ", "cot") == {
        "prompt": "Q? ###",
        "completion": " r. --> 7",
    }
    assert format_pair("Q?", "r.", "7", "vanilla") == {"prompt": "Q? ###", "completion": " 7"}
    assert format_pair("Q?", "r.", "7", "cot", "seq2seq") == {
        "prompt": "Q?",
        "completion": "r. --> 7",
    }
    assert format_pair("Q?", "r.", "7", "vanilla", "seq2seq") == {"prompt": "Q?", "completion": "7"}


def test_answer_filtering_keeps_exactly_the_correct_samples(generated):
    store, exp, _ = generated
    curated = curate(store, exp)
    assert len(curated) == 28 * 3
    assert {c.sample.id for c in curated if c.kept} == {
        c.sample.id for c in curated if c.sample.correct
    }
    assert any(not c.kept for c in curated)
    unfiltered = curate(store, exp, filter_answers=False)
    assert all(c.kept for c in unfiltered)


def test_reviews_apply_on_top_and_edits_keep_the_original(generated):
    store, exp, _ = generated
    curated = curate(store, exp)
    wrong = next(c for c in curated if not c.sample.correct)
    right = next(c for c in curated if c.sample.correct)
    review(store, wrong.sample.id, "accepted", " A corrected rationale.")
    review(store, right.sample.id, "rejected")
    after = {c.sample.id: c for c in curate(store, exp)}
    assert (
        after[wrong.sample.id].kept
        and after[wrong.sample.id].rationale == " A corrected rationale."
    )
    assert after[wrong.sample.id].sample.rationale == wrong.sample.rationale  # original kept
    assert not after[right.sample.id].kept
    review(store, wrong.sample.id, clear_edit=True)
    assert {c.sample.id: c for c in curate(store, exp)}[wrong.sample.id].edited_rationale is None
    with pytest.raises(UserError, match="accepted' or 'rejected"):
        review(store, right.sample.id, "maybe")


def test_first_sample_per_question_for_a_d1_run(generated):
    store, exp, _ = generated
    assert {c.sample.sample_index for c in curate(store, exp, diverse_samples=1)} == {0}


def test_export_both_formats_is_a_valid_prompt_completion_dataset(generated, tmp_path):
    store, exp, _ = generated
    kept = sum(c.kept for c in curate(store, exp))
    for fmt in ("cot", "vanilla"):
        out = tmp_path / f"{fmt}.jsonl"
        assert export_jsonl(store, exp, out, fmt) == kept
        records = [json.loads(line) for line in out.read_text().splitlines()]
        ds = to_dataset(records)
        assert ds.column_names == ["prompt", "completion"] and len(ds) == kept
        for r in records:
            assert r["prompt"] == r["question"] + " ###"
            tail = f" --> {r['answer']}" if fmt == "cot" else f" {r['answer']}"
            assert r["completion"].endswith(tail)
            assert r["completion"].startswith(" ")
    everything = export_jsonl(store, exp, tmp_path / "all.jsonl", include_all=True)
    assert everything == 28 * 3


def test_import_of_an_edited_export(generated, tmp_path):
    store, exp, _ = generated
    out = tmp_path / "set.jsonl"
    export_jsonl(store, exp, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    lines[0]["completion"] = " My own better reasoning. --> " + lines[0]["answer"]
    lines[1]["decision"] = "rejected"
    out.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    counts = import_jsonl(store, exp, out)
    assert counts == {"decisions": 1, "edits": 1, "unchanged": len(lines) - 2}
    by_id = {c.sample.id: c for c in curate(store, exp)}
    assert by_id[lines[0]["sample_id"]].rationale == "My own better reasoning."
    assert not by_id[lines[1]["sample_id"]].kept
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sample_id": 99999}\n')
    with pytest.raises(UserError, match="line 1: not a sample of experiment e"):
        import_jsonl(store, exp, bad)


def test_per_question_yield(generated):
    store, exp, _ = generated
    y = question_yield(store, exp)
    assert len(y["questions"]) == 28 and y["done"] == 84
    assert y["accuracy"] == pytest.approx(
        sum(bool(s.correct) for s in load_samples(store, exp.id)) / 84
    )
    assert all(0 <= q["correct"] <= 3 and q["samples"] == 3 for q in y["questions"])


def test_replay_of_an_export_costs_nothing_and_reproduces_the_samples(generated, tmp_path):
    store, exp, questions = generated
    out = tmp_path / "all.jsonl"
    export_jsonl(store, exp, out, include_all=True)
    exp2 = store.create_experiment("replayed", "coin_flip")
    store.add_questions(exp2.id, questions)
    teacher = ReplayTeacher([out])
    settings = GenerationSettings(samples=3, temperature=0.7)
    stats = run_generation(store, exp2, teacher, settings, questions, COIN, None)
    assert stats.done == 84 and stats.spend == 0
    original = {
        (s.idx, s.sample_index): (s.rationale, s.correct) for s in load_samples(store, exp.id)
    }
    replayed = {
        (s.idx, s.sample_index): (s.rationale, s.correct) for s in load_samples(store, exp2.id)
    }
    assert replayed == original


def test_replay_of_the_papers_completion_format(tmp_path, generated):
    store, _, questions = generated
    q = questions[0]
    paper = {
        "metadata": {
            "base_model": "text-davinci-002",
            "dataset_key": "coin_flip",
            "completion_key": "zs_cot_t70",
        },
        "data": {
            str(q.index): [
                {
                    "sample_index": q.index,
                    "completion_index": k,
                    "question": q.question,
                    "answer": q.answer,
                    "reasoning_prompt": "...",
                    "reasoning_completion": f" Reasoning number {k}.",
                    "reasoning_finish_reason": "stop",
                    "prompt": "...",
                    "completion": f" {q.answer}.",
                    "finish_reason": "stop",
                }
                for k in range(2)
            ]
        },
    }
    path = tmp_path / "D_coin_flip.json"
    path.write_text(json.dumps(paper))
    exp = store.create_experiment("paper-replay", "coin_flip")
    store.add_questions(exp.id, questions[:2])
    teacher = ReplayTeacher([path])
    assert teacher.info.model == "text-davinci-002"
    stats = run_generation(
        store,
        exp,
        teacher,
        GenerationSettings(samples=2, temperature=0.7),
        questions[:2],
        COIN,
        None,
    )
    assert stats.done == 2 and stats.failed == 2  # the second question is not in the file
    samples = load_samples(store, exp.id)
    assert [s.rationale for s in samples if s.status == "done"] == [
        " Reasoning number 0.",
        " Reasoning number 1.",
    ]
    assert all("not in the replay files" in s.error for s in samples if s.status == "failed")
    with pytest.raises(UserError, match="cannot read replay file"):
        ReplayTeacher([tmp_path / "missing.json"])


def test_review_queue_filters_by_verdict_length_state_and_text(generated):
    store, exp, _ = generated
    everything = curate(store, exp)
    assert review_queue(store, exp) == everything
    correct = review_queue(store, exp, ReviewFilter(verdict="correct"))
    assert correct and all(c.sample.correct for c in correct)
    assert len(correct) + len(review_queue(store, exp, ReviewFilter(verdict="wrong"))) == 84
    first = everything[0]
    review(store, first.sample.id, "rejected", "A rationale with ZEBRA in it.")
    assert [c.sample.id for c in review_queue(store, exp, ReviewFilter(text="zebra"))] == [
        first.sample.id
    ]
    for state, n in (("pending", 83), ("reviewed", 1), ("rejected", 1), ("accepted", 0)):
        assert len(review_queue(store, exp, ReviewFilter(state=state))) == n
    assert len(review_queue(store, exp, ReviewFilter(state="edited", verdict="any"))) == 1
    assert review_queue(store, exp, ReviewFilter(length="truncated")) == []  # 128-token cap
    with pytest.raises(UserError, match="state filter is one of"):
        ReviewFilter(state="done")


def test_decisions_on_many_and_clearing_keeps_an_edit(generated):
    store, exp, _ = generated
    ids = [c.sample.id for c in curate(store, exp)[:3]]
    review(store, ids[0], edited_rationale="Mine.")
    assert set_decisions(store, ids, "accepted") == 3
    assert review_counts(curate(store, exp))["accepted"] == 3
    set_decisions(store, ids, None)
    after = {c.sample.id: c for c in curate(store, exp)}
    assert all(after[i].decision is None for i in ids)
    assert after[ids[0]].edited_rationale == "Mine."
    assert store.read("SELECT COUNT(*) FROM reviews")[0][0] == 1  # empty reviews are removed


def test_bulk_review_acts_on_the_filter_and_never_overrides_a_decision(generated):
    store, exp, _ = generated
    curated = curate(store, exp)
    right = [c for c in curated if c.sample.correct]
    with store.transaction() as conn:  # a correct answer from a rationale cut at the token cap
        conn.execute(
            "UPDATE samples SET rationale_finish = 'length' WHERE id = ?", (right[0].sample.id,)
        )
    review(store, right[1].sample.id, "rejected")
    changed, left = bulk_review(store, exp, ReviewFilter(), "accept_correct_complete")
    assert (changed, left) == (len(right) - 2, 1)
    by_id = {c.sample.id: c for c in curate(store, exp)}
    assert by_id[right[0].sample.id].decision is None
    assert by_id[right[1].sample.id].decision == "rejected"
    changed, _ = bulk_review(
        store, exp, ReviewFilter(verdict="correct"), "reject_wrong_or_truncated"
    )
    assert changed == 1  # the truncated one; the rest of the filter is correct and complete
    assert {c.sample.id: c for c in curate(store, exp)}[right[0].sample.id].decision == "rejected"
    assert bulk_review(store, exp, ReviewFilter(), "clear") == (len(right), 84 - len(right))
    assert review_counts(curate(store, exp))["pending"] == 84
    with pytest.raises(UserError, match="bulk action is one of"):
        bulk_review(store, exp, ReviewFilter(), "accept_everything")


def test_review_counts_and_sample_ownership(generated):
    store, exp, _ = generated
    counts = review_counts(curate(store, exp))
    assert counts["samples"] == 84 and counts["questions"] == 28
    assert counts["kept"] == counts["correct"] and counts["pending"] == 84
    other = store.create_experiment("other", "coin_flip")
    sample_id = curate(store, exp)[0].sample.id
    check_sample(store, exp, sample_id)
    with pytest.raises(UserError, match=f"no sample {sample_id} in experiment other"):
        check_sample(store, other, sample_id)


def test_an_import_is_all_or_nothing(generated, tmp_path):
    store, exp, _ = generated
    out = tmp_path / "set.jsonl"
    export_jsonl(store, exp, out, include_all=True)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    lines[0]["decision"] = "rejected"
    lines[1]["edited_rationale"] = "Better."
    for bad, why in (
        ({"decision": "maybe"}, "line 3: decision is 'accepted', 'rejected' or null"),
        ({"edited_rationale": 42}, "line 3: edited_rationale must be text"),
    ):
        out.write_text("\n".join(json.dumps(x) for x in [*lines[:2], {**lines[2], **bad}]))
        with pytest.raises(UserError, match=why):
            import_jsonl(store, exp, out)
        assert store.read("SELECT COUNT(*) FROM reviews")[0][0] == 0  # lines 1-2 not applied
