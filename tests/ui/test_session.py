"""Owners, quotas and the experiment picker: the parts of the app every tab relies on."""

from __future__ import annotations

import pytest

from rtdemo.errors import UserError
from rtdemo.hosting.quotas import Quotas, owner_is_visitor
from rtdemo.ui.experiments import (
    TaskChoice,
    create_experiment,
    describe_experiment,
    experiment_names,
)
from rtdemo.ui.session import resolve_owner


def test_owner_is_the_login_else_the_kept_id_else_a_new_one():
    assert resolve_owner("anon-0123456789abcdef", "alice") == "hf:alice"
    assert resolve_owner("anon-0123456789abcdef") == "anon-0123456789abcdef"
    fresh = resolve_owner(None)
    assert fresh.startswith("anon-") and fresh != resolve_owner(None)
    # A browser cannot claim a logged-in user's (or any made-up) identity.
    for forged in ("hf:alice", "local", "anon-xyz", "anon-0123456789abcdef; drop", 42):
        assert resolve_owner(forged) not in ("hf:alice", "local", forged)


def test_quotas_come_from_the_environment_with_spaces_defaults():
    assert Quotas.from_env({}) == Quotas(2, 0, 0, 0)
    spaces = Quotas.from_env({"SYSTEM": "spaces"})
    assert spaces.visitor_max_samples == 2000 and spaces.visitor_max_steps == 3000
    custom = Quotas.from_env({"SYSTEM": "spaces", "RTDEMO_VISITOR_MAX_STEPS": "0"})
    assert custom.visitor_max_steps == 0
    with pytest.raises(UserError, match="RTDEMO_MAX_RUNNING_JOBS='two' is not a whole number"):
        Quotas.from_env({"RTDEMO_MAX_RUNNING_JOBS": "two"})


def test_quotas_stop_visitors_but_not_logged_in_users():
    q = Quotas(max_running_jobs=1, visitor_max_samples=100, visitor_max_steps=50)
    assert owner_is_visitor("anon-0123456789abcdef") and not owner_is_visitor("hf:bob")
    with pytest.raises(UserError, match=r"questions × samples \(60 × 2\) is 120.*limit of 100"):
        q.check_samples("anon-0123456789abcdef", 60, 2)
    q.check_samples("hf:bob", 60, 2)
    with pytest.raises(UserError, match="log in with Hugging Face"):
        q.check_steps("anon-0123456789abcdef", 51)
    with pytest.raises(UserError, match="1 job"):
        q.check_running("hf:bob", 1)
    q.check_running("hf:bob", 0)


def test_an_experiment_snapshots_train_and_test_and_belongs_to_its_owner(ui_ctx, owner):
    choice = TaskChoice("last_letter_concatenation", "synthetic", seed=3, size=30, length=2)
    message = create_experiment(ui_ctx, owner, "mine", choice)
    assert "21 train and 9 test questions" in message
    assert experiment_names(ui_ctx, owner) == ["mine"]
    assert experiment_names(ui_ctx, "anon-ffffffffffffffff") == []
    with pytest.raises(UserError, match="no experiment named 'mine'"):
        describe_experiment(ui_ctx, "anon-ffffffffffffffff", "mine")
    with pytest.raises(UserError, match="already have an experiment named 'mine'"):
        create_experiment(ui_ctx, owner, "mine", choice)
    # Another owner may use the same name.
    create_experiment(ui_ctx, "anon-ffffffffffffffff", "mine", choice)
    with ui_ctx.store() as store:
        exp = store.get_experiment("mine", owner)
        assert exp.config["source_argv"] == [
            "--source",
            "synthetic",
            "--seed",
            "3",
            "--size",
            "30",
            "--length",
            "2",
        ]


def test_an_experiment_records_the_source_first_available_resolved_to(
    ui_ctx, owner, paper_data, monkeypatch
):
    create_experiment(ui_ctx, owner, "auto-letters", TaskChoice("last_letter_concatenation"))
    monkeypatch.setenv("RTDEMO_PAPER_DATA", str(paper_data))
    create_experiment(ui_ctx, owner, "auto-svamp", TaskChoice("svamp"))
    with ui_ctx.store() as store:
        assert store.get_experiment("auto-letters", owner).config["source"] == "synthetic"
        svamp = store.get_experiment("auto-svamp", owner)
        assert svamp.config["source"] == "paper"
        assert store.count_questions(svamp.id, "test") == 300


def test_bad_input_to_create_says_what_to_do(ui_ctx, owner, tmp_path):
    choice = TaskChoice("last_letter_concatenation", "synthetic", size=30, length=2)
    with pytest.raises(UserError, match="type a name"):
        create_experiment(ui_ctx, owner, "  ", choice)
    with pytest.raises(UserError, match="still starting"):
        create_experiment(ui_ctx, None, "x", choice)
    with pytest.raises(UserError, match="upload your file"):
        create_experiment(ui_ctx, owner, "x", TaskChoice("gsm8k", "file"))
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nWhat?,\n")
    with pytest.raises(UserError, match="row 1"):
        create_experiment(ui_ctx, owner, "x", TaskChoice("gsm8k", "file", file=str(bad)))
    assert experiment_names(ui_ctx, owner) == []  # nothing half-made is left behind


def test_a_visitor_above_the_question_cap_is_told_why(ui_ctx, owner):
    ui_ctx.quotas = Quotas(visitor_max_questions=10)
    choice = TaskChoice("coin_flip", "synthetic", size=30, length=2)
    with pytest.raises(UserError, match="limit of 10 for visitors"):
        create_experiment(ui_ctx, owner, "big", choice)


@pytest.mark.slow
def test_two_clients_are_two_owners_and_cannot_see_each_other(launched_app):
    from gradio_client import Client

    _, url = launched_app
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    owner_a = a.predict(None, None, api_name="/session")[0]
    owner_b = b.predict(None, None, api_name="/session")[0]
    assert owner_a != owner_b
    args = ("last_letter_concatenation", "synthetic", 0, 30, 2, None, "question", "answer", "", 0)
    picker, _, message = a.predict("shared-name", *args, api_name="/create_experiment")
    assert picker["value"] == "shared-name" and "21 train" in message
    # A returning browser (same kept id) sees its experiment; the other client does not.
    again = Client(url, verbose=False).predict(owner_a, None, api_name="/session")
    assert again[0] == owner_a and again[2]["value"] == "shared-name"
    assert b.predict(owner_b, None, api_name="/session")[2]["choices"] == []


def test_a_logged_in_user_is_the_owner_whatever_the_browser_kept(ui_ctx, letters_experiment, owner):
    from rtdemo.ui.app import start_session

    kept, who, line, picker, _ = start_session(ui_ctx, owner, None, "alice")
    assert who == "hf:alice" and "alice" in line and kept == owner
    assert picker.choices == []  # the visitor's experiments stay the visitor's
    kept, who, _, picker, described = start_session(ui_ctx, owner, "letters", None)
    assert who == owner and picker.value == "letters" and "28 train / 12 test" in described


def test_login_button_only_on_spaces(monkeypatch, tmp_path):
    import gradio as gr

    from rtdemo.ui.app import build_app

    monkeypatch.delenv("SYSTEM", raising=False)
    demo = build_app(tmp_path / "ws")
    assert not any(isinstance(b, gr.LoginButton) for b in demo.blocks.values())
