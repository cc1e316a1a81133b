"""The Review tab: handlers on an experiment with built-in-teacher samples, and one real client.

The fixture generates D=3 rationales for 28 last-letter questions with a 30% error rate and a
20-token cap, so there are correct, wrong and truncated samples to filter and review.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtdemo.curation.curate import ReviewFilter, curate
from rtdemo.errors import UserError
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.tasks.registry import TASKS
from rtdemo.teachers.builtin import BuiltinTeacher
from rtdemo.ui import review_actions as ra
from rtdemo.ui import review_view as rv
from rtdemo.ui.review_tab import page_values
from rtdemo.ui.session import AppContext

XSS = "<script>alert(1)</script> then <img src=x onerror=alert(1)>"
ANY = ReviewFilter()


def _generate(ctx: AppContext, owner: str, name: str) -> None:
    with ctx.store() as store:
        exp = store.get_experiment(name, owner)
        questions = store.questions(exp.id, "train")
        settings = GenerationSettings(samples=3, temperature=0.7, max_tokens=20)
        teacher = BuiltinTeacher(error_rate=0.3)
        run_generation(store, exp, teacher, settings, questions, TASKS[exp.task].answer, None)


@pytest.fixture
def samples(ui_ctx, owner, letters_experiment) -> str:
    """`letters` with 84 finished samples; returns the experiment name."""
    _generate(ui_ctx, owner, letters_experiment)
    return letters_experiment


def _page(ctx, owner, name, filt=ANY, sid=None, move="stay") -> rv.ReviewPage:
    return rv.load_page(ctx, owner, name, filt, sid, move)


def test_filters_select_by_verdict_length_review_and_text(ui_ctx, owner, samples):
    page = _page(ui_ctx, owner, samples)
    c = page.counts
    assert c["samples"] == 84 and c["correct"] + c["wrong"] == 84 and c["pending"] == 84
    assert 0 < c["correct"] < 84 and 0 < c["truncated"] < 84 and c["kept"] == c["correct"]
    correct = _page(ui_ctx, owner, samples, ReviewFilter(verdict="correct"))
    assert correct.in_filter == c["correct"] and {r[7] for r in correct.table} == {"✔"}
    wrong = _page(ui_ctx, owner, samples, ReviewFilter(verdict="wrong"))
    assert wrong.in_filter == c["wrong"] and {r[7] for r in wrong.table} == {"✘"}
    cut = _page(ui_ctx, owner, samples, ReviewFilter(length="truncated"))
    assert cut.in_filter == c["truncated"] and {r[8] for r in cut.table} == {"truncated"}
    word = correct.table[0][3].split('"')[1]  # a name in the first question
    found = rv.review_queue(ui_ctx, owner, samples, ReviewFilter(text=word.upper()))
    assert found["samples"] and all(word in s["question"] for s in found["samples"])
    assert _page(ui_ctx, owner, samples, ReviewFilter(state="reviewed")).in_filter == 0
    assert (
        "No rationales match this filter"
        in _page(ui_ctx, owner, samples, ReviewFilter(state="accepted")).message
    )
    with pytest.raises(UserError, match="verdict filter is one of"):
        ReviewFilter(verdict="maybe")


def test_decisions_are_saved_at_once_and_seen_by_a_new_session(ui_ctx, owner, samples):
    first, second, third = (int(r[0]) for r in _page(ui_ctx, owner, samples).table[:3])
    assert "accepted" in ra.review_decide(ui_ctx, owner, samples, first, "accept")
    assert "rejected" in ra.review_decide(ui_ctx, owner, samples, second, "reject")
    ra.review_decide(ui_ctx, owner, samples, third, "reject")
    ra.review_decide(ui_ctx, owner, samples, third, "clear")
    fresh = AppContext.from_env(ui_ctx.workspace)  # another process reading the same workspace
    page = _page(fresh, owner, samples)
    assert page.counts["accepted"] == 1 and page.counts["rejected"] == 1
    decisions = {int(r[0]): r[9] for r in page.table}
    assert decisions[first] == "accepted" and decisions[second] == "rejected"
    assert decisions[third] == "not reviewed"
    detail = _page(fresh, owner, samples, sid=second).detail
    assert detail.sample_id == second and detail.decision.startswith("rejected")
    assert len(detail.siblings) == 3 and sum(r[0] == "▶" for r in detail.siblings) == 1
    with pytest.raises(UserError, match="action is one of"):
        ra.review_decide(ui_ctx, owner, samples, first, "approve")


def test_next_and_previous_follow_the_filter_without_skipping(ui_ctx, owner, samples):
    pending = ReviewFilter(state="pending")
    start = _page(ui_ctx, owner, samples, pending)
    ids = [int(r[0]) for r in start.table]
    assert start.detail.sample_id == ids[0] and start.detail.position.startswith("Rationale 1 of")
    assert _page(ui_ctx, owner, samples, pending, ids[0], "next").detail.sample_id == ids[1]
    assert _page(ui_ctx, owner, samples, pending, ids[1], "prev").detail.sample_id == ids[0]
    assert _page(ui_ctx, owner, samples, pending, ids[-1], "next").detail.sample_id == ids[-1]
    # Accepting moves the sample out of "not reviewed": next is the one after it, not two on.
    ra.review_decide(ui_ctx, owner, samples, ids[0], "accept")
    after = _page(ui_ctx, owner, samples, pending, ids[0], "next")
    assert after.detail.sample_id == ids[1] and after.in_filter == len(ids) - 1
    shown = _page(ui_ctx, owner, samples, pending, ids[0], "show").detail
    assert shown.sample_id == ids[0] and shown.position.startswith("Not in this filter")


def test_an_edit_keeps_the_original_and_shows_a_diff(ui_ctx, owner, samples):
    wrong = _page(ui_ctx, owner, samples, ReviewFilter(verdict="wrong", length="complete"))
    sid = wrong.detail.sample_id
    original = wrong.detail.original
    fixed = original.replace("So the answer", "Checked again. So the answer")
    assert "Accept it" in ra.review_decide(ui_ctx, owner, samples, sid, "edit", fixed)
    detail = _page(ui_ctx, owner, samples, sid=sid).detail
    assert detail.original == original and detail.rationale == fixed.strip()
    assert ("Checked again. ", "added") in detail.diff or any(
        label == "added" and "Checked" in text for text, label in detail.diff
    )
    assert "".join(t for t, label in detail.diff if label != "added") == original
    assert "".join(t for t, label in detail.diff if label != "removed") == fixed.strip()
    assert "edited" in detail.decision and "not kept" in detail.decision
    ra.review_decide(ui_ctx, owner, samples, sid, "accept", fixed)  # accept keeps the edit
    with ui_ctx.store() as store:
        exp = store.get_experiment(samples, owner)
        c = next(c for c in curate(store, exp) if c.sample.id == sid)
    assert c.kept and c.rationale == fixed.strip() and c.sample.rationale == original
    with pytest.raises(UserError, match="cannot be empty"):
        ra.review_decide(ui_ctx, owner, samples, sid, "edit", "   ")
    assert "back to the teacher's original" in ra.review_decide(
        ui_ctx, owner, samples, sid, "discard_edit"
    )
    assert _page(ui_ctx, owner, samples, sid=sid).detail.diff == []


def test_bulk_actions_work_on_the_filter_and_keep_own_decisions(ui_ctx, owner, samples):
    everything = rv.review_queue(ui_ctx, owner, samples, ANY)["samples"]
    good_by_question: dict[str, list] = {}
    for s in everything:
        if s["correct"] and not s["truncated"]:
            good_by_question.setdefault(s["question"], []).append(s)
    question = next(q for q, good in good_by_question.items() if len(good) >= 2)
    narrow = ReviewFilter(text=question.split('"')[1])  # the words of one question
    good = [s for s in rv.review_queue(ui_ctx, owner, samples, narrow)["samples"]]
    good = [s for s in good if s["correct"] and not s["truncated"]]
    ra.review_decide(ui_ctx, owner, samples, good[0]["sample_id"], "reject")
    note = ra.review_bulk(ui_ctx, owner, samples, narrow, "accept_correct_complete")
    assert f"Accepted {len(good) - 1} correct and complete" in note
    assert "1 already decided were left" in note
    counts = _page(ui_ctx, owner, samples).counts
    assert counts["accepted"] == len(good) - 1 and counts["rejected"] == 1  # only the filter
    note = ra.review_bulk(ui_ctx, owner, samples, ANY, "reject_wrong_or_truncated")
    assert f"Rejected {counts['wrong']}" in note
    assert "Cleared the decisions of" in ra.review_bulk(ui_ctx, owner, samples, ANY, "clear")
    assert _page(ui_ctx, owner, samples).counts["pending"] == 84


def test_counts_and_per_question_yield(ui_ctx, owner, samples):
    page = _page(ui_ctx, owner, samples)
    assert len(page.yields) == 28 and all(row[2] == 3 for row in page.yields)
    assert sum(row[3] for row in page.yields) == page.counts["correct"]
    first = page.table[0]
    ra.review_decide(ui_ctx, owner, samples, int(first[0]), "reject")
    after = _page(ui_ctx, owner, samples)
    row = next(r for r in after.yields if r[0] == first[1])
    assert row[6] == 1
    text = rv.counts_markdown(after.counts, after.in_filter)
    assert "**84** rationales" in text and "1 rejected" in text and "Kept for training" in text


def test_export_then_import_round_trip(ui_ctx, owner, samples, tmp_path):
    ids = [int(r[0]) for r in _page(ui_ctx, owner, samples).table]
    ra.review_decide(ui_ctx, owner, samples, ids[0], "reject")
    ra.review_decide(ui_ctx, owner, samples, ids[1], "edit", "My own rationale.")
    ra.review_decide(ui_ctx, owner, samples, ids[1], "accept")
    before = rv.review_queue(ui_ctx, owner, samples, ANY)
    path, note = ra.export_curated(ui_ctx, owner, samples, include_all=True)
    assert "Exported 84 finished rationales" in note
    lines = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 84 and lines[1]["completion"].startswith(" My own rationale. --> ")
    assert str(ui_ctx.workspace) not in Path(path).read_text(encoding="utf-8")  # no server path
    ra.review_bulk(ui_ctx, owner, samples, ANY, "clear")
    ra.review_decide(ui_ctx, owner, samples, ids[1], "discard_edit")
    assert rv.review_queue(ui_ctx, owner, samples, ANY)["counts"]["pending"] == 84
    note = ra.import_curated(ui_ctx, owner, samples, path)
    assert "2 decisions, 1 edits, 82 lines unchanged" in note
    assert rv.review_queue(ui_ctx, owner, samples, ANY) == before
    kept_path, note = ra.export_curated(ui_ctx, owner, samples, "vanilla")
    assert f"Exported {before['counts']['kept']} kept" in note and "vanilla" in kept_path


def test_a_bad_import_says_why_and_changes_nothing(ui_ctx, owner, samples, tmp_path):
    ids = [int(r[0]) for r in _page(ui_ctx, owner, samples).table]
    ra.review_decide(ui_ctx, owner, samples, ids[0], "accept")
    before = rv.review_queue(ui_ctx, owner, samples, ANY)
    bad = tmp_path / "edited.jsonl"
    good_line = json.dumps({"sample_id": ids[1], "decision": "rejected"})
    for text, why in (
        (f'{good_line}\n{{"sample_id": 999999}}\n', "edited.jsonl line 2: not a sample"),
        (f'{good_line}\n{{"sample_id": {ids[2]}, "decision": "ok"}}\n', "line 2: decision is"),
        ("this is not json\n", "line 1: not a sample of experiment letters"),
    ):
        bad.write_text(text)
        with pytest.raises(UserError, match=why) as err:
            ra.import_curated(ui_ctx, owner, samples, str(bad))
        assert str(tmp_path) not in str(err.value)  # the file's name, not the server's folder
        assert rv.review_queue(ui_ctx, owner, samples, ANY) == before
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="cannot read"):
        ra.import_curated(ui_ctx, owner, samples, str(bad))
    with pytest.raises(UserError, match=r"choose a \.jsonl file"):
        ra.import_curated(ui_ctx, owner, samples, None)


def test_another_owner_sees_and_touches_nothing(ui_ctx, owner, samples):
    other = "anon-ffffffffffffffff"
    sid = int(_page(ui_ctx, owner, samples).table[0][0])
    with pytest.raises(UserError, match="no experiment named 'letters'"):
        rv.load_page(ui_ctx, other, samples, ANY)
    with pytest.raises(UserError, match="no experiment named 'letters'"):
        ra.review_decide(ui_ctx, other, samples, sid, "reject")
    from rtdemo.ui.experiments import TaskChoice, create_experiment

    choice = TaskChoice("last_letter_concatenation", "synthetic", seed=0, size=40, length=2)
    create_experiment(ui_ctx, other, "letters", choice)  # the same name, their own
    assert rv.load_page(ui_ctx, other, "letters", ANY).counts["samples"] == 0
    with pytest.raises(UserError, match=f"no sample {sid} in experiment letters"):
        ra.review_decide(ui_ctx, other, "letters", sid, "reject")
    assert rv.load_page(ui_ctx, other, "letters", ANY, sid, "show").detail.sample_id is None
    assert _page(ui_ctx, owner, samples).counts["pending"] == 84
    with pytest.raises(UserError, match="pick an experiment"):
        rv.load_page(ui_ctx, owner, None, ANY)


def test_markup_in_rationales_and_edits_comes_back_as_text(ui_ctx, owner, samples):
    first, second = (int(r[0]) for r in _page(ui_ctx, owner, samples).table[:2])
    with ui_ctx.store() as store, store.transaction() as conn:  # what a hostile teacher wrote
        conn.execute("UPDATE samples SET rationale = ? WHERE id = ?", (XSS, first))
    ra.review_decide(ui_ctx, owner, samples, second, "edit", f"Edited: {XSS}")
    page = _page(ui_ctx, owner, samples, sid=first)
    assert page.detail.original == XSS and page.table[0][4] == XSS
    assert XSS in [row[3] for row in page.detail.siblings]
    edited = _page(ui_ctx, owner, samples, sid=second).detail
    assert edited.rationale == f"Edited: {XSS}"
    assert "".join(t for t, label in edited.diff if label != "removed") == f"Edited: {XSS}"
    records = {s["sample_id"]: s for s in rv.review_queue(ui_ctx, owner, samples, ANY)["samples"]}
    assert records[first]["rationale"] == XSS
    assert records[second]["edited_rationale"] == f"Edited: {XSS}"
    # Only our own text reaches the Markdown slots (status, counts, position); escaped if odd.
    values = page_values(rv.ReviewPage(message=XSS, counts=page.counts, detail=page.detail))
    assert all("<" not in values[i] for i in range(3)) and values[11] == XSS
    hits = rv.review_queue(ui_ctx, owner, samples, ReviewFilter(text="onerror=alert(1)"))
    assert [s["sample_id"] for s in hits["samples"]] == [first, second]


def test_the_review_tab_builds_with_its_endpoints(tmp_path):
    from rtdemo.ui.app import build_app

    demo = build_app(tmp_path / "ws")
    names = {fn.api_name for fn in demo.fns.values()}
    assert {"review_queue", "review_decide", "review_bulk"} <= names
    assert {"export_curated", "import_curated"} <= names


@pytest.mark.slow
def test_a_client_reviews_exports_and_imports(client, tmp_path):
    from gradio_client import Client, handle_file

    args = ("last_letter_concatenation", "synthetic", 0, 40, 2, None, "question", "answer", "", 0)
    client.predict("letters", *args, api_name="/create_experiment")
    _generate(AppContext.from_env(tmp_path / "workspace"), client.owner, "letters")
    queue = client.predict("letters", "wrong", "any", "pending", "", api_name="/review_queue")
    assert queue["counts"]["samples"] == 84 and len(queue["samples"]) == queue["counts"]["wrong"]
    sid = queue["samples"][0]["sample_id"]
    out = client.predict("letters", sid, "edit", XSS, api_name="/review_decide")
    assert out["sample"]["edited_rationale"] == XSS and out["sample"]["rationale"] != XSS
    out = client.predict("letters", sid, "accept", "", api_name="/review_decide")
    assert out["sample"]["decision"] == "accepted" and out["sample"]["kept"]
    out = client.predict(
        "letters",
        "correct",
        "complete",
        "any",
        "",
        "accept_correct_complete",
        api_name="/review_bulk",
    )
    assert "correct and complete" in out["message"]
    path, note = client.predict("letters", "cot", "causal", False, api_name="/export_curated")
    lines = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]
    assert len(lines) == queue["counts"]["correct"] + 1 and "Exported" in note
    assert any(r["edited_rationale"] == XSS for r in lines)
    note = client.predict("letters", handle_file(path), api_name="/import_curated")
    assert "lines unchanged" in note and not note.startswith("⚠️")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sample_id": 1, "decision": "nope"}\n')
    note = client.predict("letters", handle_file(str(bad)), api_name="/import_curated")
    assert note.startswith("⚠️") and "bad.jsonl line 1: decision is" in note
    with pytest.raises(Exception, match="no sample 999999"):
        client.predict("letters", 999999, "reject", "", api_name="/review_decide")
    # Another browser (owner): Gradio itself refuses an experiment its picker does not offer.
    other = Client(client.src, verbose=False)
    other.predict(None, None, api_name="/session")
    with pytest.raises(Exception, match="not in the list of choices"):
        other.predict("letters", "any", "any", "any", "", api_name="/review_queue")
    # Once it has its own "letters", Gradio accepts the name: the app's owner checks answer.
    other.predict("letters", *args, api_name="/create_experiment")
    theirs = other.predict("letters", "any", "any", "any", "", api_name="/review_queue")
    assert theirs["counts"]["samples"] == 0 and theirs["samples"] == []  # not the first owner's
    with pytest.raises(Exception, match=f"no sample {sid} in experiment letters"):
        other.predict("letters", sid, "reject", "", api_name="/review_decide")
    mine = client.predict("letters", "any", "any", "any", "", api_name="/review_queue")
    mine = {s["sample_id"]: s for s in mine["samples"]}
    assert mine[sid]["decision"] == "accepted" and mine[sid]["edited_rationale"] == XSS
