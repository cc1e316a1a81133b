"""On a shared app (here: on Spaces, 2,000 MB of weights at most, `RTDEMO_MAX_MODEL_MB`) a Hub model
a visitor names in the Train, Teacher or Chat tab is measured on the Hub before the server fetches
anything of it: a too-large one is refused with its size and nothing is downloaded; a small one
goes on. On one's own machine nothing is measured. The Hub is tests/fakes/hub_server.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rtdemo.chat.student import STUDENTS
from rtdemo.errors import UserError
from rtdemo.students.loading import build_tiny_student
from rtdemo.ui.chat_actions import ChatForm, chat, resolve_student
from rtdemo.ui.session import AppContext
from rtdemo.ui.teacher_actions import TeacherChoice, start_generation
from rtdemo.ui.train_actions import TrainForm, cancel_training, start_training
from tests.fakes.hub_server import FakeHubServer, use_fake_hub
from tests.helpers import kill_job_processes

HUGE = "big-org/huge-model"  # 13.5 GB of weights as the Hub lists them (a few bytes here)
SMALL = "small-org/tiny-model"  # the tiny student: a few KB
TOO_LARGE = rf"{HUGE} has 13\.5 GB of weights; this app loads models up to 2\.0 GB"
QUESTION = "Take the last letters of each words in 'Ada Lovelace' and concatenate them."


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Iterator[FakeHubServer]:
    """The fake Hub with a huge model and a small one, which this process and its jobs reach."""
    small = build_tiny_student(tmp_path / "tiny", layers=1, width=16, heads=2)
    with FakeHubServer(tmp_path / "hub") as server:
        use_fake_hub(monkeypatch, server, tmp_path / "hf-home")
        config = (small / "config.json").read_bytes()  # a config transformers reads
        server.add_repo(
            "model",
            HUGE,
            {"config.json": config, "model.safetensors": b"not really 13.5 GB"},
            sizes={"model.safetensors": int(13.5 * 2**30)},
        )
        server.add_folder(SMALL, small)
        yield server
    STUDENTS.clear()  # a chat student loaded here


@pytest.fixture
def shared(monkeypatch, hub: FakeHubServer, ui_ctx: AppContext) -> Iterator[AppContext]:
    """A public Space's app (its default limits) on this test's workspace."""
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.delenv("RTDEMO_ALLOW_LOCAL_ACCESS", raising=False)
    monkeypatch.delenv("RTDEMO_MAX_MODEL_MB", raising=False)
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield ui_ctx
    kill_job_processes(ui_ctx.workspace)


def fetched(hub: FakeHubServer, repo: str) -> set[str]:
    """The files of `repo` the server fetched or looked up to fetch (resolve requests)."""
    return {r.path for r in hub.requests_for(repo) if r.endpoint == "resolve"}


def measured(hub: FakeHubServer, repo: str) -> list[str]:
    """The listings of `repo` with its files' sizes the server asked for."""
    return [r.query for r in hub.requests_for(repo) if r.endpoint == "info" and "blobs" in r.query]


def jobs(ctx: AppContext) -> int:
    with ctx.store() as store:
        return store.read("SELECT COUNT(*) FROM jobs")[0][0]


def test_the_train_tab_refuses_a_too_large_student_before_any_download(
    shared, hub, owner, letters_experiment
):
    form = TrainForm(student=HUGE, formats="vanilla baseline", max_steps=1, batch_size=2)
    with pytest.raises(UserError, match=TOO_LARGE + ": choose a smaller student"):
        start_training(shared, owner, letters_experiment, form)
    assert jobs(shared) == 0
    assert [r.endpoint for r in hub.requests_for(HUGE)] == ["info"]  # not even its config
    assert measured(hub, HUGE) == ["blobs=true"]
    small = TrainForm(student=SMALL, formats="vanilla baseline", max_steps=1, batch_size=2)
    message, _ = start_training(shared, owner, letters_experiment, small)
    assert "job 1" in message and jobs(shared) == 1  # measured, then planned and started
    assert measured(hub, SMALL) == ["blobs=true"]
    cancel_training(shared, owner, letters_experiment)


def test_the_teacher_tab_refuses_a_too_large_local_teacher(shared, hub, owner, letters_experiment):
    choice = TeacherChoice("hf", model=HUGE, max_tokens=4, limit=1, concurrency=1)
    with pytest.raises(UserError, match=TOO_LARGE + ": choose a smaller local teacher model"):
        start_generation(shared, owner, letters_experiment, choice)
    assert jobs(shared) == 0 and fetched(hub, HUGE) == set()


def test_the_chat_loads_no_too_large_model_in_the_app_process(
    shared, hub, owner, letters_experiment
):
    with pytest.raises(UserError, match=TOO_LARGE + ": choose a smaller student"):
        next(chat(shared, owner, letters_experiment, QUESTION, ChatForm(student=HUGE)))
    local = ChatForm(teacher="hf", model=HUGE, student=SMALL, student_max_tokens=4)
    with pytest.raises(UserError, match=TOO_LARGE + ": choose a smaller local teacher model"):
        next(chat(shared, owner, letters_experiment, QUESTION, local))
    assert fetched(hub, HUGE) == set()
    # A small Hub student passes the check and answers.
    final = list(chat(shared, owner, letters_experiment, QUESTION, ChatForm(student=SMALL)))[-1]
    assert "⚠️" not in final.student_status and final.exchange is not None
    assert any(path.endswith("/model.safetensors") for path in fetched(hub, SMALL))
    first = hub.requests_for(SMALL)[0]  # measured before anything of it was fetched
    assert first.endpoint == "info" and first.query == "blobs=true"


def test_on_ones_own_machine_a_hub_model_is_not_measured(
    hub, ui_ctx, owner, letters_experiment, monkeypatch
):
    monkeypatch.delenv("SYSTEM", raising=False)
    monkeypatch.delenv("RTDEMO_ALLOW_LOCAL_ACCESS", raising=False)
    monkeypatch.setenv("RTDEMO_MAX_MODEL_MB", "1")  # a limit, but the user is the host here
    with ui_ctx.store() as store:  # the chat's student: read (its config), not measured
        exp = store.get_experiment(letters_experiment, owner)
        assert resolve_student(store, exp, HUGE).path == HUGE
    assert measured(hub, HUGE) == [] and fetched(hub, HUGE)  # transformers' requests only
