"""Diversity reported: distinct rationales per question in the generation summary and progress,
the per-question yield (CLI and Review tab) and the Teacher tab, with a warning when every
question's samples at T > 0 came back identical (a server that ignores `temperature` or `n`).

The fake OpenAI-compatible server plays such a server with `max_n=1, no_sampling=True` (one choice
whatever `n` says, the same text whatever `temperature` says: what `transformers serve` does on
SmolLM2; tests/teachers/test_smollm2_teacher.py checks the real one).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rtdemo.curation.curate import question_yield
from rtdemo.generation.diversity import diversity, normalize
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import load_samples
from rtdemo.jobs.progress import format_progress
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.ui.review_view import YIELD_HEADERS, yield_rows
from rtdemo.ui.teacher_actions import diversity_note
from rtdemo.workspace.store import Store
from tests.fakes.openai_server import FakeOpenAIServer, coin_flip_responder

KEY = "sk-test-key"
COIN = TASKS["coin_flip"].answer
WARNING = "all 2 samples of 3 questions at temperature 0.7 are identical"


def sample(idx: int, rationale: str | None, temperature: float = 0.7, **kw) -> SimpleNamespace:
    fields = dict(split="train", teacher="openai", base_url="u", model="m", max_tokens=64)
    return SimpleNamespace(idx=idx, rationale=rationale, temperature=temperature, **(fields | kw))


def test_rationales_are_compared_after_whitespace_normalisation():
    assert normalize("  The coin\n\nis  heads up.\t") == "The coin is heads up."
    assert normalize(None) == normalize("") == normalize(" \n ") == ""
    d = diversity(
        [sample(0, " A  b\n"), sample(0, "A b"), sample(1, "x"), sample(1, "y"), sample(2, None)]
    )
    assert d.per_question == {("train", 0): 1, ("train", 1): 2}  # no rationale: not counted
    assert d.mean_distinct == 1.5 and (d.sampled, d.identical) == (2, 1)
    assert d.warning() is None  # one question varied: a real sampler can repeat itself
    assert d.describe() == (
        "1.50 distinct rationales per question (1 to 2) over 2 questions; 1 of 2 questions "
        "sampled at temperature > 0 got identical samples"
    )


def test_the_warning_needs_every_sampled_question_identical_at_a_temperature():
    same = [sample(i, "the same text") for i in range(3) for _ in range(2)]
    assert WARNING in (diversity(same).warning() or "")
    assert "may ignore `temperature` or `n`" in diversity(same).warning()
    # Greedy samples (T = 0) are meant to be the same; one sample per question says nothing.
    assert (
        diversity([sample(i, "t", temperature=0.0) for i in range(3) for _ in range(2)]).sampled
        == 0
    )
    assert diversity([sample(i, "t") for i in range(3)]).warning() is None
    # Samples of two teacher settings are not compared with each other.
    mixed = [sample(0, "a"), sample(0, "b", model="other")]
    assert diversity(mixed).sampled == 0 and diversity(mixed).per_question[("train", 0)] == 2
    # A question identical in one setting but varied in another is not an identical question.
    both = [*same[:2], sample(0, "a", model="other"), sample(0, "b", model="other")]
    d = diversity(both)
    assert (d.sampled, d.identical, d.warning()) == (1, 0, None)
    four = [sample(0, "t") for _ in range(4)] + [sample(1, "t") for _ in range(2)]
    assert "all 2 to 4 samples of 2 questions" in diversity(four).warning()


def test_the_progress_line_reports_diversity_for_diverse_runs_only():
    record = {"done": 6, "total": 6, "samples_per_question": 2, "distinct_per_question": 1.0}
    record |= {"sampled_questions": 3, "identical_questions": 3}
    line = format_progress(record)
    assert "1.00 distinct rationales per question (D=2)" in line
    assert "3 of 3 questions' samples identical" in line
    one = {"done": 3, "total": 3, "samples_per_question": 1, "distinct_per_question": 1.0}
    assert "distinct" not in format_progress(one)


@pytest.fixture
def questions():
    return generate("coin_flip", SyntheticSettings(size=40), "train")[:3]


def _run(tmp_path, server, questions, name="e"):
    """D=2 at T=0.7 through the project's OpenAI-compatible teacher; (stats, progress records,
    yield, the stored samples)."""
    records: list[dict] = []
    with Store(tmp_path / "ws") as store:
        exp = store.create_experiment(name, "coin_flip")
        store.add_questions(exp.id, questions)
        teacher = OpenAITeacher("fake-model", base_url=server.base_url, api_key=KEY, timeout=5)
        settings = GenerationSettings(samples=2, temperature=0.7, max_tokens=64)
        stats = run_generation(
            store,
            exp,
            teacher,
            settings,
            questions,
            COIN,
            None,
            lambda s: records.append(s.progress()),
        )
        return stats, records, question_yield(store, exp), load_samples(store, exp.id)


def test_a_server_that_does_not_sample_is_asked_again_and_warned_about(tmp_path, questions):
    with FakeOpenAIServer(
        api_key=KEY, responder=coin_flip_responder, max_n=1, no_sampling=True
    ) as server:
        stats, records, y, samples = _run(tmp_path, server, questions)
        # Each call 1 asked n=2, got one choice, and asked again for the missing one.
        ns = [r.body.get("n", 1) for r in server.requests if "Therefore" not in str(r.body)]
        assert sorted(ns) == [1, 1, 1, 2, 2, 2] and server.requests_total == 12
    assert stats.done == 6
    last = records[-1]
    assert last["distinct_per_question"] == 1.0
    assert (last["sampled_questions"], last["identical_questions"]) == (3, 3)
    assert "3 of 3 questions' samples identical" in format_progress(last)
    result = stats.diversity.result()
    assert WARNING in result.warning()
    assert [q["distinct"] for q in y["questions"]] == [1, 1, 1]
    assert y["distinct_per_question"] == 1.0 and WARNING in y["diversity_warning"]
    note = diversity_note(samples)
    assert "1.00 distinct rationales per question" in note and f"⚠️ {WARNING}" in note


def test_a_sampling_server_gives_distinct_rationales_and_no_warning(tmp_path, questions):
    with FakeOpenAIServer(api_key=KEY, responder=coin_flip_responder) as server:
        stats, records, y, samples = _run(tmp_path, server, questions)
    assert (stats.done, stats.requests) == (6, 9)  # n=2 answered in one request
    assert records[-1]["distinct_per_question"] == 2.0
    assert records[-1]["identical_questions"] == 0
    assert stats.diversity.result().warning() is None and y["diversity_warning"] is None
    assert [q["distinct"] for q in y["questions"]] == [2, 2, 2]
    assert "⚠️" not in diversity_note(samples) and "2.00 distinct" in diversity_note(samples)


def test_a_resumed_run_counts_the_stored_rationales(tmp_path, questions):
    with FakeOpenAIServer(
        api_key=KEY, responder=coin_flip_responder, max_n=1, no_sampling=True
    ) as server:
        _run(tmp_path, server, questions)
        with Store(tmp_path / "ws") as store:  # again on the first experiment: nothing to ask
            exp = store.get_experiment("e")
            teacher = OpenAITeacher("fake-model", base_url=server.base_url, api_key=KEY)
            settings = GenerationSettings(samples=2, temperature=0.7, max_tokens=64)
            again = run_generation(store, exp, teacher, settings, questions, COIN, None)
    assert again.requests == 0 and again.progress()["identical_questions"] == 3
    assert WARNING in again.diversity.result().warning()


def test_the_review_tabs_yield_table_has_distinct_rationales(tmp_path, questions):
    from rtdemo.curation.curate import curate

    with FakeOpenAIServer(
        api_key=KEY, responder=coin_flip_responder, max_n=1, no_sampling=True
    ) as server:
        _run(tmp_path, server, questions)
    with Store(tmp_path / "ws") as store:
        rows = yield_rows(curate(store, store.get_experiment("e")))
    assert YIELD_HEADERS[-1] == "distinct rationales"
    assert [len(r) for r in rows] == [len(YIELD_HEADERS)] * 3
    assert [r[2] for r in rows] == [2, 2, 2] and [r[-1] for r in rows] == [1, 1, 1]


@pytest.mark.slow
def test_cli_generate_and_experiments_show_report_diversity(tmp_path, run_cli):
    ws = tmp_path / "ws"
    with FakeOpenAIServer(
        api_key=KEY, responder=coin_flip_responder, max_n=1, no_sampling=True
    ) as server:
        out = run_cli(
            "generate", "--task", "coin_flip", "--limit", "3", "--teacher", "openai",
            "--model", "fake-model", "--base-url", server.base_url, "--samples", "2",
            "--temperature", "0.7", "--experiment", "same", "--workspace", ws,
            env={"OPENAI_API_KEY": KEY},
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (
        "diversity (D=2): 1.00 distinct rationales per question (1) over 3 questions" in out.stdout
    )
    assert f"warning: {WARNING}" in out.stdout
    assert "1.00 distinct rationales per question (D=2)" in out.stderr  # the progress line
    shown = run_cli("experiments", "show", "same", "--workspace", ws)
    assert shown.returncode == 0, shown.stderr
    assert f"warning: {WARNING}" in shown.stdout
    lines = shown.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["index"])
    assert lines[header].split()[5] == "distinct"
    table = lines[header + 1 :]
    assert len(table) == 3 and all(line.split()[5] == "1" for line in table)
