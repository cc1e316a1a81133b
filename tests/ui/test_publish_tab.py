"""The Publish tab's handlers on real background push jobs, against the fake Hub on 127.0.0.1.

The workspace is built once (tests/publishing/test_hub_push.py's `build_workspace`: rationales,
reviews and three tiny students trained for 3 steps and evaluated) and copied for each test. Push
jobs are subprocesses: they get the Hub's address from the app (`HF_ENDPOINT` → `--endpoint`) and
the token through their environment only.

    .venv/bin/python -m pytest tests/ui/test_publish_tab.py
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from rtdemo.errors import UserError
from rtdemo.jobs import processes as job_processes
from rtdemo.jobs.processes import pid_alive
from rtdemo.ui.publish_actions import (
    PublishForm,
    cancel_publish,
    hub_token,
    publish_command,
    publish_status,
    start_publish,
    trained_runs,
)
from rtdemo.ui.session import AppContext
from tests.fakes.hub_server import HUB_ENDPOINTS, TOKEN, FakeHubServer
from tests.publishing.test_hub_push import (
    PUBLISHED,
    build_workspace,
    evaluated_again,
    files_of,
    no_token_anywhere,
    predictions,
)

T = TypeVar("T")
OWNER = "anon-0123456789abcdef"
OTHER = "anon-ffffffffffffffff"


def wait_for(check: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def owner() -> str:
    """The owner the module's workspace was built for."""
    return OWNER


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("publish-tab") / "workspace"
    build_workspace(workspace, owner=OWNER)
    return workspace


@pytest.fixture
def ctx(built: Path, tmp_path: Path, monkeypatch) -> AppContext:
    """The app's context on a copy of the built workspace; job processes are killed at the end."""
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved `hf auth login` token
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("SYSTEM", raising=False)
    shutil.copytree(built, tmp_path / "ws")
    context = AppContext.from_env(tmp_path / "ws")
    yield context
    with context.store() as store:
        rows = store.read("SELECT id, pid FROM jobs WHERE pid IS NOT NULL")
    for job_id, pid in rows:
        if pid_alive(pid, job_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    job_processes._CHILDREN.clear()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch):
    """The fake Hub, which the app's jobs reach (`HF_ENDPOINT`; not offline)."""
    with FakeHubServer(tmp_path / "hub") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        yield server
    assert server.handler_errors == []


def job_count(ctx: AppContext) -> int:
    with ctx.store() as store:
        return store.read("SELECT COUNT(*) FROM jobs")[0][0]


def wait_until_idle(ctx: AppContext, owner: str, timeout: float = 120):
    return wait_for(
        lambda: (v := publish_status(ctx, owner, "letters")) and not v.active and v,
        timeout,
        "the push job to end",
    )


FORM = PublishForm(repo_id="tester/letters", all_samples=True)


# -- the form, the token, the runs ----------------------------------------------------------------


def test_the_form_builds_the_command_the_cli_runs(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert FORM.argv("letters", None) == [
        "push", "--experiment", "letters", "--repo-id", "tester/letters", "--what", "both",
        "--private", "--license", "unknown", "--all-samples",
    ]  # fmt: skip
    form = PublishForm("cot", "student", "me/x", "", "public", True, True, "mit")
    argv = form.argv("letters", "http://hub.local", dry_run=True)
    tail = ["--public", "--license", "mit", "--merged", "--endpoint", "http://hub.local"]
    assert argv[-7:] == [*tail, "--dry-run"]
    assert "--all-samples" not in argv and argv[argv.index("--run") + 1] == "cot"
    assert PublishForm(what="dataset", run="cot", repo_id="a/b").argv("e", None)[5:7] == [
        "--what",
        "dataset",
    ]
    text = publish_command("letters", FORM)
    assert text.startswith("# the token comes from $HF_TOKEN (there is no flag for it)")
    assert "# the dataset goes to tester/letters-rationales" in text
    assert "rtdemo push --experiment letters --repo-id tester/letters" in text
    assert publish_command("letters", PublishForm()).startswith("# type the repo id")
    # On Spaces a name alone goes to the signed-in user's account.
    named = PublishForm(repo_id="letters", dataset_repo_id="rats").with_owner("ada")
    assert (named.repo_id, named.dataset_repo_id) == ("ada/letters", "ada/rats")
    assert PublishForm.of(None, None, " a/b ", None, None, None, None, None) == PublishForm(
        repo_id="a/b"
    )


def test_the_token_is_the_users_own(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN", "hf_" + "theServersOwnToken")
    assert hub_token(" hf_typed ", "hf_oauth", spaces=True) == "hf_typed"
    assert hub_token("", "hf_oauth", spaces=True) == "hf_oauth"
    # On Spaces the server's HF_TOKEN belongs to the host: never used for a visitor.
    with pytest.raises(UserError, match="sign in with Hugging Face"):
        hub_token("", None, spaces=True)
    own = "hf_" + "theServersOwnToken"
    assert hub_token("", None, spaces=False) == own  # one person, own machine
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UserError, match="no Hugging Face token: type one with write access"):
        hub_token(None, None, spaces=False)


def test_runs_are_listed_cot_first_and_nothing_starts_without_what_it_needs(ctx, owner):
    assert trained_runs(ctx, owner, "letters") == ["lora", "cot", "vanilla"]
    with pytest.raises(UserError, match="no Hugging Face token"):
        start_publish(ctx, owner, "letters", FORM, None)
    with pytest.raises(UserError, match="repo id 'nobody': use OWNER/NAME"):
        start_publish(ctx, owner, "letters", PublishForm(repo_id="nobody"), TOKEN)
    with pytest.raises(UserError, match="has no run 'ghost'"):
        start_publish(ctx, owner, "letters", PublishForm("ghost", repo_id="a/b"), TOKEN)
    with pytest.raises(UserError, match="no experiment named 'letters'"):
        start_publish(ctx, OTHER, "letters", FORM, TOKEN)
    with pytest.raises(UserError, match="nothing to cancel"):
        cancel_publish(ctx, owner, "letters")
    assert publish_status(ctx, owner, "letters").status == "Nothing published yet."
    assert job_count(ctx) == 0


# -- real push jobs --------------------------------------------------------------------------------


@pytest.mark.slow
def test_preview_then_publish_from_the_tab_and_what_arrived_matches(ctx, owner, hub):
    import datasets

    message, command = start_publish(ctx, owner, "letters", FORM, None, dry_run=True)
    assert message == "Preview (dry run): job 1 started." and "--all-samples" in command
    view = wait_until_idle(ctx, owner)
    assert "job 1 (push) **done**" in view.status and "Preview: the files" in view.status
    # What the tab shows names the data folder by its variable, never by the server's path.
    assert "are in `$RTDEMO_HOME/" in view.status
    assert str(ctx.workspace) not in view.status + view.log + view.files + view.card
    assert "tester/letters\n  README.md" in view.files and "model.safetensors" in view.files
    assert "model-index:" in view.card and "tester/letters-rationales (dataset)" in view.card
    assert hub.requests == []  # a preview uploads nothing

    message, _ = start_publish(ctx, owner, "letters", FORM, TOKEN)
    assert message == "Publishing: job 2 started."
    view = wait_until_idle(ctx, owner)
    assert "job 2 (push) **done**" in view.status, view.status
    assert f"[tester/letters]({hub.url}/tester/letters)" in view.status
    assert "Published the dataset (private)" in view.status and view.percent == 100.0
    assert "published tester/letters-rationales" in view.log
    model_folder = hub.folder("model", "tester/letters")
    assert set(files_of(model_folder)) == PUBLISHED
    again = evaluated_again(model_folder, ctx.workspace, owner)
    own = predictions(ctx.workspace, "lora", owner)
    assert [p["output"] for p in again.predictions] == [p["output"] for p in own]
    folder = hub.folder("dataset", "tester/letters-rationales")
    assert datasets.load_dataset(str(folder), "curated", split="train").num_rows == 18

    # A failure says what to do in the tab; publishing again duplicates nothing.
    hub.fail("create", "unauthorized", repo_type="model")
    second = PublishForm(repo_id="tester/second")
    start_publish(ctx, owner, "letters", second, TOKEN)
    view = wait_until_idle(ctx, owner)
    assert "**failed**" in view.status and "refused the token (401 Unauthorized" in view.status
    assert "press **Publish** again" in view.status
    start_publish(ctx, owner, "letters", second, TOKEN)
    assert "**done**" in wait_until_idle(ctx, owner).status
    assert len(hub.repo("model", "tester/second").commits) == 1
    assert len(hub.repo("dataset", "tester/second-rationales").commits) == 1
    no_token_anywhere(ctx.workspace)


@pytest.mark.slow
def test_a_client_publishes_and_watches_it_to_the_end(client, launched_app, tmp_path, monkeypatch):
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("SYSTEM", raising=False)
    with FakeHubServer(tmp_path / "hub") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_TOKEN", TOKEN)  # the machine's token: a local app uses it
        build_workspace(tmp_path / "workspace", owner=client.owner)
        client.predict(client.kept, None, api_name="/session")  # the picker learns "letters"
        form = ("", "student and dataset", "tester/client", "", "private", False, False, "mit")
        message, command = client.predict("letters", *form, "", api_name="/start_publish")
        assert message == "Publishing: job 1 started.", message
        assert "--license mit" in command and f"--endpoint {hub.url}" in command

        def finished():
            status, _, _, files, cards = client.predict("letters", api_name="/publish_status")
            return "**done**" in status and (status, files, cards)

        status, files, cards = wait_for(finished, 180, "the client's push job")
        assert f"[tester/client]({hub.url}/tester/client)" in status
        assert "model.safetensors" in files and "license: mit" in cards
        assert set(hub.repo("model", "tester/client").files) == PUBLISHED


@pytest.mark.slow
def test_on_spaces_the_signed_in_users_oauth_token_publishes_never_the_servers(
    ctx, owner, hub, monkeypatch
):
    import gradio as gr

    from rtdemo.ui.publish_tab import start_from_tab

    monkeypatch.setenv("HF_TOKEN", "hf_" + "theSpaceHostsOwnTokenNotYours0")  # the host's secret
    form = PublishForm("cot", "student", "oauth-student")
    message, _ = start_from_tab(ctx, owner, "letters", form, spaces=True)
    assert message.startswith("⚠️ sign in with Hugging Face") and job_count(ctx) == 0

    oauth = gr.OAuthToken(token=TOKEN, scope="openid profile contribute-repos", expires_at=0)
    profile = gr.OAuthProfile(
        {"name": "T", "preferred_username": "tester", "profile": "", "picture": ""}
    )
    message, command = start_from_tab(
        ctx, owner, "letters", form, oauth=oauth, profile=profile, spaces=True
    )
    assert message == "Publishing: job 1 started." and "--repo-id tester/oauth-student" in command
    view = wait_until_idle(ctx, owner)
    assert "**done**" in view.status, view.status
    assert set(hub.repo("model", "tester/oauth-student").files) == PUBLISHED
    hub_calls = [r for r in hub.requests if r.endpoint in HUB_ENDPOINTS]  # not xet storage's
    assert {r.authorization for r in hub_calls} == {f"Bearer {TOKEN}"}  # the user's own
    no_token_anywhere(ctx.workspace)
