"""The Teacher tab: its handlers over real background jobs (the built-in teacher, replay, and a fake
OpenAI-compatible server), and one round trip through `gradio_client`.

Jobs are real detached subprocesses with a 0.2 s heartbeat; whatever is still running when a test
ends is killed.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from rtdemo.curation.curate import export_jsonl
from rtdemo.errors import UserError
from rtdemo.generation.request import generation_plan
from rtdemo.generation.samples import load_samples
from rtdemo.hosting.disk import upload_folder
from rtdemo.hosting.quotas import Quotas
from rtdemo.jobs.records import Job
from rtdemo.jobs.runner import cancel_job
from rtdemo.ui.experiments import TaskChoice, create_experiment
from rtdemo.ui.session import AppContext
from rtdemo.ui.teacher_actions import (
    TeacherChoice,
    cancel_generation,
    estimate_generation,
    generation_status,
    resume_generation,
    start_generation,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import kill_job_processes, wait_for

T = TypeVar("T")
OTHER = "anon-ffffffffffffffff"


def fresh_key() -> str:
    """A fake key made at run time (so secret scanners do not flag the source)."""
    return "sk-" + "canary" + uuid.uuid4().hex


def latest(ctx: AppContext, owner: str, name: str = "letters") -> Job | None:
    with ctx.store() as store:
        return ctx.latest_job(store, owner, store.get_experiment(name, owner), ["generate"])


def wait_ended(ctx: AppContext, owner: str, name: str = "letters") -> Job:
    def ended() -> Job | None:
        job = latest(ctx, owner, name)
        return job if job is not None and job.ended else None

    return wait_for(ended, what="the generation job to end")


def samples_of(ctx: AppContext, owner: str, name: str = "letters") -> list:
    with ctx.store() as store:
        return load_samples(store, store.get_experiment(name, owner).id)


@pytest.fixture(autouse=True)
def _jobs_cleaned_up(tmp_path: Path, monkeypatch) -> Iterator[None]:
    """Fast heartbeats, no server key in the environment, and no job left running afterwards."""
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield
    kill_job_processes(tmp_path / "workspace")


def test_estimate_is_free_for_builtin_priced_for_openai_and_uses_the_snapshot(ui_ctx, owner):
    choice = TaskChoice("last_letter_concatenation", "synthetic", size=40, length=2, limit=5)
    create_experiment(ui_ctx, owner, "few", choice)
    text, command = estimate_generation(ui_ctx, owner, "few", TeacherChoice())
    assert "5 samples to generate for 5 questions" in text and "free" in text
    assert "rtdemo generate --experiment few --stored-questions --source synthetic" in command
    # Reloading the source (500 questions by default, 28 train here without the limit) would
    # have added questions: the snapshot is all a generation sees.
    with ui_ctx.store() as store:
        assert store.count_questions(store.get_experiment("few", owner).id) == 10

    paid = TeacherChoice("openai", "http://127.0.0.1:9/v1", "gpt-4o-mini", samples=4)
    text, command = estimate_generation(ui_ctx, owner, "few", replace(paid, temperature=0.7))
    assert "20 samples" in text and "at most $" in text and "free" not in text
    assert "--teacher openai --base-url http://127.0.0.1:9/v1 --model gpt-4o-mini" in command
    assert "$OPENAI_API_KEY" in command  # how the key gets there, never the key itself
    text, _ = estimate_generation(ui_ctx, owner, "few", TeacherChoice("openai", "", "my-model"))
    assert "cost unknown" in text
    with pytest.raises(UserError, match="would all be the same"):
        estimate_generation(ui_ctx, owner, "few", paid)
    with pytest.raises(UserError, match="type the teacher's model name"):
        estimate_generation(ui_ctx, owner, "few", TeacherChoice("hf"))
    with pytest.raises(UserError, match="pick an experiment"):
        estimate_generation(ui_ctx, owner, None, TeacherChoice())


def test_builtin_run_stores_samples_and_reports_teacher_accuracy_then_replay(
    ui_ctx, owner, letters_experiment, tmp_path
):
    message, command = start_generation(ui_ctx, owner, "letters", TeacherChoice())
    assert message.startswith("Started job") and "--teacher builtin" in command
    job = wait_ended(ui_ctx, owner)
    status, fraction, log, rows = generation_status(ui_ctx, owner, "letters")
    assert job.status == "done", status
    assert "**done**" in status and "28/28 done" in status and "teacher accuracy so far" in status
    assert fraction == 1.0 and "28/28 samples done" in log
    assert rows and all(isinstance(r[6], str) and r[6] for r in rows)  # rationales, as text
    assert len(samples_of(ui_ctx, owner)) == 28
    with ui_ctx.store() as store:
        exp = store.get_experiment("letters", owner)
        assert store.count_questions(exp.id) == 40  # nothing reloaded, nothing added
        export = tmp_path / "upload" / "samples.jsonl"
        export_jsonl(store, exp, export, include_all=True)

    # Replay what the built-in teacher wrote: free, and the upload is kept in the owner's folder.
    replay = TeacherChoice("replay", replay_file=str(export))
    assert "free" in estimate_generation(ui_ctx, owner, "letters", replay)[0]
    _, command = start_generation(ui_ctx, owner, "letters", replay)
    job = wait_ended(ui_ctx, owner)
    assert job.status == "done", job.error
    kept = Path(job.argv[job.argv.index("--replay-file") + 1])
    assert kept.parent == upload_folder(ui_ctx.workspace, owner) and kept.is_file()
    assert owner not in command  # a visitor's only credential never shows in a command line
    # The tab names the data folder by its variable, never by the server's path.
    assert f"--replay-file $RTDEMO_HOME/{kept.relative_to(ui_ctx.workspace)}" in command
    assert str(ui_ctx.workspace) not in command
    assert {s.teacher for s in samples_of(ui_ctx, owner)} == {"builtin", "replay"}


def test_an_openai_teacher_needs_a_key_and_a_refusing_server_fails_the_job_in_the_tab(
    ui_ctx, owner, letters_experiment, monkeypatch
):
    key = fresh_key()
    # The server's own environment has the right key: an app user must never get to use it.
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with FakeOpenAIServer(api_key=key, models=["fake-model"]) as server:
        choice = TeacherChoice("openai", server.base_url, "fake-model", max_tokens=16)
        with pytest.raises(UserError, match="type the API key"):
            start_generation(ui_ctx, owner, "letters", choice, "")
        with ui_ctx.store() as store:  # below the tab: the plan takes the user's key only
            request = choice.request(store.get_experiment("letters", owner))

        def plan(store):
            return generation_plan(store, request, owner, api_key=None, app_key=True)

        with pytest.raises(UserError, match="needs an API key"):
            ui_ctx.start(owner, request.argv(), plan)
        assert latest(ui_ctx, owner) is None and server.requests_total == 0

        start_generation(ui_ctx, owner, "letters", choice, fresh_key())  # a wrong key
        assert wait_ended(ui_ctx, owner).status == "failed"
        status = generation_status(ui_ctx, owner, "letters")[0]
        assert "❌" in status and "rejected the API key (401)" in status and "Resume" in status
        monkeypatch.delenv("OPENAI_API_KEY")

        unknown = TeacherChoice("openai", server.base_url, "no-such-model", max_tokens=16)
        start_generation(ui_ctx, owner, "letters", unknown, key)
        assert wait_ended(ui_ctx, owner).status == "failed"
        status = generation_status(ui_ctx, owner, "letters")[0]
        assert "'no-such-model' was not found" in status
    assert samples_of(ui_ctx, owner) == []


def test_a_visitor_over_the_sample_quota_is_told_and_no_job_starts(
    ui_ctx, owner, letters_experiment
):
    ui_ctx.quotas = Quotas(visitor_max_samples=50)
    diverse = TeacherChoice(samples=2, temperature=0.7)
    with pytest.raises(UserError, match=r"\(28 × 2\) is 56, above this app's limit of 50"):
        start_generation(ui_ctx, owner, "letters", diverse)
    assert latest(ui_ctx, owner) is None
    assert "No job yet" in generation_status(ui_ctx, owner, "letters")[0]


def test_on_a_public_space_teachers_on_the_servers_network_or_disk_are_refused(
    ui_ctx, owner, letters_experiment, monkeypatch
):
    monkeypatch.setenv("SYSTEM", "spaces")
    internal = TeacherChoice("openai", "http://127.0.0.1:9/v1", "gpt-4o-mini")
    with pytest.raises(UserError, match=r"does not reach its own network: 127\.0\.0\.1"):
        start_generation(ui_ctx, owner, "letters", internal, fresh_key())
    with pytest.raises(UserError, match="does not load models from its own disk"):
        start_generation(ui_ctx, owner, "letters", TeacherChoice("hf", model="/srv/teacher"))
    assert latest(ui_ctx, owner) is None
    monkeypatch.setenv("RTDEMO_ALLOW_LOCAL_ACCESS", "1")  # the host allows it
    start_generation(ui_ctx, owner, "letters", internal, fresh_key())
    assert latest(ui_ctx, owner) is not None


def test_cancel_resume_owners_and_the_key_stays_off_disk(ui_ctx, owner, letters_experiment):
    key = fresh_key()
    with FakeOpenAIServer(api_key=key) as server:
        # Two samples (four calls) are answered, then the fifth request is held: the cancel
        # below surely lands mid-run, whatever the machine's speed.
        server.hold(after=4)
        choice = TeacherChoice("openai", server.base_url, "fake-model", concurrency=1)
        start_generation(ui_ctx, owner, "letters", choice, key)
        job = wait_for(lambda: latest(ui_ctx, owner), what="the job")
        assert key not in " ".join(job.argv) and job.env_names == ["OPENAI_API_KEY"]
        assert server.wait_held(1, timeout=120), "the fifth request never arrived"

        # Another owner sees nothing and cancels nothing, even with an experiment of that name.
        with pytest.raises(UserError, match="no experiment named 'letters'"):
            generation_status(ui_ctx, OTHER, "letters")
        with pytest.raises(UserError, match="no experiment named 'letters'"):
            cancel_generation(ui_ctx, OTHER, "letters")
        with ui_ctx.store() as store, pytest.raises(UserError, match=f"no job {job.id}"):
            cancel_job(store, job.id, OTHER)
        create_experiment(ui_ctx, OTHER, "letters", TaskChoice("coin_flip", "synthetic", size=8))
        assert generation_status(ui_ctx, OTHER, "letters")[0] == "No job yet."
        with pytest.raises(UserError, match="no generation job yet"):
            cancel_generation(ui_ctx, OTHER, "letters")

        assert "Cancel requested" in cancel_generation(ui_ctx, owner, "letters")
        server.release()  # the held call finishes; nothing new is sent after the cancel
        assert wait_ended(ui_ctx, owner).status == "cancelled"
        stopped = len(samples_of(ui_ctx, owner))
        assert 2 <= stopped <= 3 and server.requests_total == 5
        shown = generation_status(ui_ctx, owner, "letters")[0]
        assert "**cancelled**" in shown and "Every finished sample is kept" in shown
        with pytest.raises(UserError, match="type the API key again"):
            resume_generation(ui_ctx, owner, "letters", "")
        assert "Resumed job" in resume_generation(ui_ctx, owner, "letters", key)
        assert wait_ended(ui_ctx, owner).status == "done"
    samples = samples_of(ui_ctx, owner)
    assert len(samples) == 28 and len({s.idx for s in samples}) == 28
    leaks = [
        p for p in ui_ctx.workspace.rglob("*") if p.is_file() and key.encode() in p.read_bytes()
    ]
    assert leaks == [], f"the key leaked into {leaks}"


def test_credentials_in_the_base_url_are_used_but_shown_and_stored_redacted(
    ui_ctx, owner, letters_experiment
):
    key, password = fresh_key(), "pw-" + uuid.uuid4().hex
    basic = "Basic " + base64.b64encode(f"user:{password}".encode()).decode()
    with FakeOpenAIServer(api_key=None) as server:  # the credentials come as HTTP basic auth
        url = server.base_url.replace("http://", f"http://user:{password}@")
        redacted = server.base_url.replace("http://", "http://***@")
        choice = TeacherChoice("openai", url, "fake-model", concurrency=1)
        text, command = estimate_generation(ui_ctx, owner, "letters", choice, key)
        assert f"teacher fake-model @ 127.0.0.1:{server.port}" in text
        assert f"--base-url '{redacted}'" in command and "$RTDEMO_TEACHER_BASE_URL" in command
        server.hold(after=4)
        _, command = start_generation(ui_ctx, owner, "letters", choice, key)
        job = wait_for(lambda: latest(ui_ctx, owner), what="the job")
        assert job.argv[job.argv.index("--base-url") + 1] == redacted
        assert sorted(job.env_names) == ["OPENAI_API_KEY", "RTDEMO_TEACHER_BASE_URL"]
        assert server.wait_held(1, timeout=120), "the fifth request never arrived"
        cancel_generation(ui_ctx, owner, "letters")
        server.release()
        assert wait_ended(ui_ctx, owner).status == "cancelled"
        # A resume needs the whole URL again (never stored), and the same server.
        with pytest.raises(UserError, match=r"has credentials.*type the whole base URL again"):
            resume_generation(ui_ctx, owner, "letters", key)
        other = url.replace(str(server.port), "9")
        with pytest.raises(UserError, match="type the whole base URL again"):
            resume_generation(ui_ctx, owner, "letters", key, other)
        assert "Resumed job" in resume_generation(ui_ctx, owner, "letters", key, url)
        assert wait_ended(ui_ctx, owner).status == "done"
        # Every request of the job carried the credentials it got through its environment.
        assert {r.headers.get("authorization") for r in server.requests} == {basic}
    status, _, log, rows = generation_status(ui_ctx, owner, "letters")
    samples = samples_of(ui_ctx, owner)
    assert len(samples) == 28 and {s.base_url for s in samples} == {redacted}
    assert password not in text + command + status + log + str(rows)
    leaks = [
        p
        for p in ui_ctx.workspace.rglob("*")
        if p.is_file() and (password.encode() in p.read_bytes() or key.encode() in p.read_bytes())
    ]
    assert leaks == [], f"the URL's credentials leaked into {leaks}"


def test_the_tab_reports_diversity_and_warns_when_a_server_does_not_sample(
    ui_ctx, owner, letters_experiment
):
    key = fresh_key()
    # One choice whatever `n` says, the same text whatever `temperature` says: what
    # `transformers serve` does on SmolLM2.
    with FakeOpenAIServer(api_key=key, max_n=1, no_sampling=True) as server:
        choice = TeacherChoice("openai", server.base_url, "fake-model", samples=2, limit=3)
        choice = replace(choice, temperature=0.7)
        start_generation(ui_ctx, owner, "letters", choice, key)
        assert wait_ended(ui_ctx, owner).status == "done"
        status = generation_status(ui_ctx, owner, "letters")[0]
        assert "1.00 distinct rationales per question (D=2)" in status  # the progress line
        assert "**Diversity** (train split): 1.00 distinct rationales per question" in status
        assert "⚠️ all 2 samples of 3 questions at temperature 0.7 are identical" in status

        server.no_sampling, server.max_n = False, None  # one that samples: no warning
        create_experiment(ui_ctx, owner, "varied", TaskChoice(
            "last_letter_concatenation", "synthetic", seed=0, size=40, length=2
        ))  # fmt: skip
        start_generation(ui_ctx, owner, "varied", choice, key)
        assert wait_ended(ui_ctx, owner, "varied").status == "done"
        status = generation_status(ui_ctx, owner, "varied")[0]
        assert "2.00 distinct rationales per question" in status and "⚠️" not in status


@pytest.mark.slow
def test_a_client_starts_a_generation_and_watches_it(client):
    args = ("last_letter_concatenation", "synthetic", 0, 20, 2, None, "question", "answer", "", 0)
    client.predict("api-letters", *args, api_name="/create_experiment")
    settings = ("builtin", "", "", "chat", None, "train", 1, 0.0, 128, 8, 0, 0, "")
    text, _ = client.predict("api-letters", *settings, api_name="/estimate_generation")
    assert "14 samples to generate" in text and "free" in text
    message, command = client.predict("api-letters", *settings, api_name="/start_generation")
    assert message.startswith("Started job") and "--stored-questions" in command

    def done():
        status = client.predict("api-letters", api_name="/generation_status")
        return status if "**done**" in status[0] else None

    status, fraction, _, table = wait_for(done, what="the job to finish")
    assert "teacher accuracy so far" in status and fraction == 1.0
    assert len(table["data"]) == 14
    cancelled = client.predict("api-letters", api_name="/cancel_generation")
    assert cancelled.startswith("⚠️") and "already ended" in cancelled
