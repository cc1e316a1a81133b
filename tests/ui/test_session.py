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
from rtdemo.ui.session import (
    OWNER_KEY_ENV,
    owner_fingerprint,
    owner_key,
    resolve_owner,
    sign_owner,
)

KEY = "the-server's-own-key"
VICTIM = "anon-0123456789abcdef"


def test_owner_is_the_login_else_the_signed_kept_id_else_a_new_one():
    kept = sign_owner(VICTIM, KEY)
    assert resolve_owner(kept, "alice", key=KEY) == "hf:alice"
    assert resolve_owner(kept, key=KEY) == VICTIM
    fresh = resolve_owner(None, key=KEY)
    assert fresh.startswith("anon-") and fresh != resolve_owner(None, key=KEY)
    # A browser cannot claim a logged-in user's (or any made-up) identity.
    for forged in ("hf:alice", "local", "anon-xyz", "anon-0123456789abcdef; drop", 42):
        assert resolve_owner(forged, key=KEY) not in ("hf:alice", "local", forged, VICTIM)


def test_an_id_without_the_servers_signature_gets_a_new_owner():
    signature = sign_owner(VICTIM, KEY).partition(".")[2]
    forged = [
        VICTIM,  # the bare id (what the page showed before ids were signed)
        f"{VICTIM}.{'0' * 32}",  # the right shape, a made-up signature
        sign_owner(VICTIM, "another key"),  # signed, but not by this server
        f"anon-ffffffffffffffff.{signature}",  # a signature swapped onto another id
        f"{VICTIM}.{signature[:-1]}",
        f"{VICTIM}.{signature.upper()}",
        f" {VICTIM}.{signature}",
    ]
    for value in forged:
        owner = resolve_owner(value, key=KEY)
        assert owner not in (VICTIM, "anon-ffffffffffffffff"), value
        assert owner.startswith("anon-")


def test_the_owner_key_is_made_once_private_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv(OWNER_KEY_ENV, raising=False)
    first = owner_key(tmp_path)
    assert len(first) >= 40 and owner_key(tmp_path) == first
    assert (tmp_path / ".owner-key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv(OWNER_KEY_ENV, "from-the-host")
    assert owner_key(tmp_path) == "from-the-host"


def test_the_page_shows_a_fingerprint_not_the_id(ui_ctx):
    from rtdemo.ui.app import start_session

    kept, who, line, _, _ = start_session(ui_ctx, None, None, None)
    assert who.startswith("anon-") and kept.startswith(who + ".")
    assert who not in line and who.removeprefix("anon-")[:6] not in line
    assert f"`#{owner_fingerprint(who)}`" in line and len(owner_fingerprint(who)) == 8


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
    # B swaps in A's id (it could have read it in a screenshot): without the server's
    # signature it is a new owner, and sees none of A's experiments.
    id_a, signature_a = owner_a.split(".")
    for forged in (id_a, f"{id_a}.{'0' * 32}", f"{owner_b.split('.')[0]}.{signature_a}"):
        kept, line, picker, _ = b.predict(forged, None, api_name="/session")
        assert kept.split(".")[0] not in (id_a, owner_b.split(".")[0])
        assert picker["choices"] == [] and "#" in line


@pytest.mark.slow
def test_the_page_config_holds_no_owner_key(launched_app, tmp_path, monkeypatch):
    import urllib.request

    from rtdemo.ui.app import browser_state_secret

    monkeypatch.delenv(OWNER_KEY_ENV, raising=False)
    _, url = launched_app
    key = owner_key(tmp_path / "workspace")  # the one the app made when it was built
    served = urllib.request.urlopen(url + "config").read().decode()
    page = urllib.request.urlopen(url).read().decode()
    assert key not in served and key not in page
    # Gradio does serve the browser state's encryption secret: derived, not the signing key.
    assert browser_state_secret(key) in served and browser_state_secret(key) != key


def test_a_logged_in_user_is_the_owner_whatever_the_browser_kept(ui_ctx, letters_experiment, owner):
    from rtdemo.ui.app import start_session

    signed = sign_owner(owner, owner_key(ui_ctx.workspace))
    kept, who, line, picker, _ = start_session(ui_ctx, signed, None, "alice")
    assert who == "hf:alice" and "alice" in line and kept == signed
    assert picker.choices == []  # the visitor's experiments stay the visitor's
    kept, who, _, picker, described = start_session(ui_ctx, signed, "letters", None)
    assert who == owner and kept == signed and picker.value == "letters"
    assert "28 train / 12 test" in described


def test_login_button_only_on_spaces(monkeypatch, tmp_path):
    import gradio as gr

    from rtdemo.ui.app import build_app

    monkeypatch.delenv("SYSTEM", raising=False)
    demo = build_app(tmp_path / "ws")
    assert not any(isinstance(b, gr.LoginButton) for b in demo.blocks.values())


#: What a Space with `hf_oauth: true` sets (the provider is unreachable here: no network).
SPACE_OAUTH = {
    "OAUTH_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
    "OAUTH_CLIENT_SECRET": "not-a-real-secret",
    "OAUTH_SCOPES": "openid profile",
    "OPENID_PROVIDER_URL": "http://127.0.0.1:9",
}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": ""}


def _has_login(url: str) -> bool:
    """Whether the served page has the "Sign in with Hugging Face" button."""
    import json
    import urllib.request

    config = json.loads(urllib.request.urlopen(url + "config").read())
    assert any(c.get("type") == "markdown" for c in config["components"])  # the app's page
    return any(
        c.get("props", {}).get("value") == "Sign in with Hugging Face" for c in config["components"]
    )


@pytest.mark.slow
def test_the_app_starts_offline_on_spaces_settings(tmp_path):
    """`python app.py` with SYSTEM=spaces and no network serves its page: without SPACE_ID
    (not a real Space: Gradio would mock the login by asking the Hub who this machine is) there
    is no login; with a Space's settings the login is there and nothing is asked at start."""
    from tests.ui.browser import app_server

    mocked = {"SYSTEM": "spaces", **SPACE_OAUTH, **OFFLINE}
    with app_server(tmp_path / "ws1", **mocked) as url:
        assert not _has_login(url)
    space = {**mocked, "SPACE_ID": "tester/reasoning-teacher", "SPACE_HOST": "127.0.0.1"}
    with app_server(tmp_path / "ws2", **space) as url:
        assert _has_login(url)
