"""The host's Hub token never serves the app's users, and jobs inherit no secret.

A shared app (here: on Spaces, SYSTEM=spaces) runs with its host's Hub token in `HF_TOKEN` and in
the token file. A fake Hub (tests/fakes/hub_server.py) logs the Authorization header of every
request: whatever a visitor names (a student, a local teacher, a chat student) must reach it with
the visitor's own token or none, never the host's; and a job's environment (read from
/proc/<pid>/environ) holds none of the server's secrets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from rtdemo.chat.student import STUDENTS
from rtdemo.errors import UserError
from rtdemo.hosting import credentials
from rtdemo.hosting.credentials import (
    for_user,
    hub_access,
    hub_token,
    own_hub_env,
    protect_server_token,
    space_owner_token,
    user_job_env,
    with_own_hub_token,
)
from rtdemo.jobs.plan import JobPlan
from rtdemo.jobs.processes import child_env
from rtdemo.jobs.runner import get_job
from rtdemo.students.loading import build_tiny_student
from rtdemo.ui.chat_actions import ChatForm, chat
from rtdemo.ui.experiments import TaskChoice, create_experiment
from rtdemo.ui.publish_actions import hub_token as publish_token
from rtdemo.ui.session import AppContext, new_owner
from rtdemo.ui.teacher_actions import TeacherChoice, start_generation
from rtdemo.ui.train_actions import TrainForm, start_training
from tests.fakes.hub_server import OTHER_TOKEN, OTHER_USER, TOKEN, USER, FakeHubServer
from tests.helpers import kill_job_processes, wait_for

REPO = Path(__file__).resolve().parents[2]
OWNER_TOKEN = TOKEN  # the Space owner's ("tester" on the fake Hub)
VISITOR_TOKEN = OTHER_TOKEN  # a signed-in visitor's own ("someone")
PUBLIC = f"{USER}/public-student"
PRIVATE = f"{USER}/private-student"  # the owner's: only the owner's token reads it
VISITORS = f"{OTHER_USER}/own-student"  # the visitor's private model
SERVER_SECRETS = {
    "HF_TOKEN": OWNER_TOKEN,
    "OPENAI_API_KEY": "sk-server-own-key-0123456789abcdef",
    "RTDEMO_OWNER_KEY": "server-owner-key-never-inherited",
    "AWS_SECRET_ACCESS_KEY": "server-aws-secret",
    "SOME_SERVICE_PASSWORD": "server-password",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny causal model folder (one layer: quick to load, train a step and generate with)."""
    folder = tmp_path_factory.mktemp("tiny") / "model"
    return build_tiny_student(folder, layers=1, width=16, heads=2)


@pytest.fixture
def hub(tmp_path: Path, tiny_model: Path) -> Iterator[FakeHubServer]:
    """The fake Hub with the tiny model as a public and a private repo of the owner's, and a
    private repo of the visitor's."""
    with FakeHubServer(tmp_path / "hub") as server:
        server.add_folder(PUBLIC, tiny_model)
        server.add_folder(PRIVATE, tiny_model, private=True)
        server.add_folder(VISITORS, tiny_model, private=True)
        yield server


@pytest.fixture
def space(tmp_path: Path, hub: FakeHubServer, monkeypatch) -> Iterator[Path]:
    """This process as a Space's app process after app.py's `protect_server_token()`: SYSTEM=spaces,
    the owner's token in HF_TOKEN and in the token file, every secret of `SERVER_SECRETS` in the
    environment, downloads from the fake Hub (here and in jobs). Yields the workspace."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text(OWNER_TOKEN)  # what `hf auth login` leaves on the server
    for name, value in {**SERVER_SECRETS, "SYSTEM": "spaces", "HF_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.5")
    monkeypatch.delenv(credentials.NO_IMPLICIT_ENV, raising=False)  # restored after the test
    monkeypatch.delenv(credentials.LEGACY_TOKEN_ENV, raising=False)
    # What huggingface_hub read at import, as if this process had started with this environment.
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    template = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    import transformers.utils.hub as transformers_hub

    monkeypatch.setattr(transformers_hub, "_hf_api", None)  # made again, on the fake's endpoint
    monkeypatch.setattr(credentials, "_captured", [])
    assert protect_server_token() is True  # what app.py does first
    workspace = tmp_path / "workspace"
    yield workspace
    kill_job_processes(workspace)
    STUDENTS.clear()  # the chat's students loaded here


def owner_token_seen(hub: FakeHubServer) -> list[str]:
    """The requests that carried the Space owner's token."""
    return [f"{r.method} {r.path}" for r in hub.requests if r.authorization == f"Bearer {TOKEN}"]


def tokens_for(hub: FakeHubServer, repo: str) -> set[str | None]:
    """The Authorization headers of the requests for `repo`."""
    return {r.authorization for r in hub.requests_for(repo)}


def letters(ctx: AppContext, owner: str) -> str:
    choice = TaskChoice("last_letter_concatenation", "synthetic", seed=0, size=12, length=2)
    create_experiment(ctx, owner, "letters", choice)
    return "letters"


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def job_of(message: str) -> int:
    """The job number a tab's message names ("... job 3 started")."""
    return int(re.search(r"[Jj]ob (\d+)", message).group(1))


def finished(ctx: AppContext, owner: str, job_id: int):
    with ctx.store() as store:
        job = get_job(store, job_id, owner)
    return job if job.ended else None


# -- the app process --------------------------------------------------------------------------


def test_protection_keeps_the_token_for_the_host_and_takes_it_out_of_reach(space):
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers

    assert space_owner_token() == OWNER_TOKEN  # captured before it left the environment
    assert "HF_TOKEN" not in os.environ and os.environ[credentials.NO_IMPLICIT_ENV] == "1"
    assert constants.HF_HUB_DISABLE_IMPLICIT_TOKEN is True
    assert "authorization" not in build_hf_headers()  # the token file is not read for a request
    assert hub_token() is None  # nothing names a token: anonymous
    with hub_access(None):
        assert hub_token() is False  # a visitor who is not signed in: explicitly none
    with hub_access(VISITOR_TOKEN):
        assert hub_token() == VISITOR_TOKEN


def test_on_your_own_machine_nothing_is_taken_away(monkeypatch):
    monkeypatch.delenv("SYSTEM", raising=False)
    monkeypatch.delenv("RTDEMO_ALLOW_LOCAL_ACCESS", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_mine")
    monkeypatch.setattr(credentials, "_captured", [])
    environ = dict(os.environ)
    assert protect_server_token(environ) is False and environ == dict(os.environ)
    assert space_owner_token() == "hf_mine"
    with hub_access(None):
        assert hub_token() is None  # huggingface_hub's own lookup: the user's token
    # The app's jobs and the CLI's get the user's own token explicitly (jobs inherit none).
    assert user_job_env(None) == {"HF_TOKEN": "hf_mine"} == own_hub_env()
    plan = with_own_hub_token(JobPlan("train", ["train"], env={"OPENAI_API_KEY": "k"}))
    assert plan.env == {"HF_TOKEN": "hf_mine", "OPENAI_API_KEY": "k"}
    # A host who shares the app (local access refused) keeps the token to themselves.
    monkeypatch.setenv("RTDEMO_ALLOW_LOCAL_ACCESS", "0")
    assert user_job_env(None) == {credentials.NO_IMPLICIT_ENV: "1"}


def test_a_shared_app_off_spaces_never_publishes_with_the_servers_token(monkeypatch):
    monkeypatch.delenv("SYSTEM", raising=False)
    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    monkeypatch.setenv("RTDEMO_ALLOW_LOCAL_ACCESS", "0")  # the host shares the app
    with pytest.raises(UserError, match="never publishes with its server's own token"):
        publish_token("", None, spaces=False)
    assert publish_token("hf_typed", None, spaces=False) == "hf_typed"
    monkeypatch.setenv("RTDEMO_ALLOW_LOCAL_ACCESS", "1")  # one person's own machine
    assert publish_token("", None, spaces=False) == OWNER_TOKEN


def test_app_py_protects_the_owners_token_before_serving(hub, tmp_path):
    """The Space's entry point itself: after `app.py` ran, a Hub request for a visitor carries
    no token, and the host's token is still at hand for the host's own code."""
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text(OWNER_TOKEN)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "SYSTEM")},
        **SERVER_SECRETS,
        "SYSTEM": "spaces",
        "HF_HOME": str(home),
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "RTDEMO_HOME": str(tmp_path / "workspace"),
    }
    script = (
        "import json, os, runpy\n"
        "runpy.run_path('app.py')\n"
        "from rtdemo.hosting.credentials import space_owner_token\n"
        "from rtdemo.students.loading import student_kind\n"
        f"kind = student_kind({PUBLIC!r})\n"
        "print(json.dumps({'kind': kind, 'kept': space_owner_token(),"
        " 'env': 'HF_TOKEN' in os.environ or 'OPENAI_API_KEY' in os.environ}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"kind": "causal", "kept": OWNER_TOKEN, "env": False}
    assert hub.requests_for(PUBLIC) and tokens_for(hub, PUBLIC) == {None}


def test_a_visitors_chat_student_is_fetched_with_their_token_or_none(space, hub):
    ctx = AppContext.from_env(space)
    owner = new_owner()
    name = letters(ctx, owner)
    question = "Take the last letters of each words in 'Ada Lovelace' and concatenate them."

    def ask(student: str, token: str | None) -> str:
        form = ChatForm(student=student, student_max_tokens=4)
        views = list(chat(ctx, owner, name, question, form, hub_token=token))
        return views[-1].student_status

    assert "⚠️" not in ask(PUBLIC, None)  # anonymous: a public model loads
    assert tokens_for(hub, PUBLIC) == {None}
    with pytest.raises(UserError, match=f"cannot check the size of {PRIVATE}: .*sign in"):
        ask(PRIVATE, None)  # the owner's private model: not with the owner's token
    assert "⚠️" not in ask(VISITORS, VISITOR_TOKEN)  # signed in: their own model loads
    # Their token where transformers passes it on; none where it does not (a listing).
    assert f"Bearer {VISITOR_TOKEN}" in tokens_for(hub, VISITORS)
    assert tokens_for(hub, VISITORS) <= {f"Bearer {VISITOR_TOKEN}", None}
    assert owner_token_seen(hub) == []


# -- jobs -------------------------------------------------------------------------------------


def test_child_env_is_an_allow_list(space):
    env = child_env(space, {"HF_TOKEN": VISITOR_TOKEN})
    for name in SERVER_SECRETS:
        assert name not in env or name == "HF_TOKEN"
    assert env["HF_TOKEN"] == VISITOR_TOKEN  # given explicitly
    assert env["HF_ENDPOINT"] and env["HF_HOME"] and env["PATH"] and env["SYSTEM"] == "spaces"
    assert env[credentials.NO_IMPLICIT_ENV] == "1" and env["RTDEMO_HOME"] == str(space)
    assert not [n for n in env if n.endswith(("_KEY", "_SECRET", "_PASSWORD"))]


@pytest.mark.parametrize("visitor_token", [None, VISITOR_TOKEN])
def test_a_visitors_job_environment_holds_no_server_secret(space, visitor_token):
    ctx = AppContext.from_env(space)
    owner = new_owner()
    sleeper = ["jobs", "_sleep", "--steps", "10000", "--seconds", "0.1"]
    plan = for_user(lambda store: JobPlan("generate", sleeper), visitor_token)
    job = ctx.start(owner, sleeper, plan)
    env = environ_of(job.pid)
    leaked = {n: v for n, v in env.items() if v in SERVER_SECRETS.values()}
    assert leaked == {}
    assert env.get("HF_TOKEN") == visitor_token  # the visitor's own, given explicitly, or none
    assert env[credentials.NO_IMPLICIT_ENV] == "1"  # so the server's token file is not read
    assert env["HF_ENDPOINT"] == os.environ["HF_ENDPOINT"] and "PATH" in env


def test_a_visitors_local_teacher_job_never_carries_the_owners_token(space, hub, monkeypatch):
    ctx = AppContext.from_env(space)
    owner = new_owner()
    name = letters(ctx, owner)
    # What the job itself fetches: with no size limit, the private model is not refused first.
    monkeypatch.setenv("RTDEMO_MAX_MODEL_MB", "0")
    runs = {}
    for model, token in ((PUBLIC, None), (PRIVATE, None), (VISITORS, VISITOR_TOKEN)):
        choice = TeacherChoice("hf", model=model, max_tokens=4, limit=1, concurrency=1)
        message, _ = start_generation(ctx, owner, name, choice, hub_token=token)
        runs[model] = wait_for(partial(finished, ctx, owner, job_of(message)), 180, model)
    assert runs[PUBLIC].status == "done" and runs[VISITORS].status == "done"
    assert runs[PRIVATE].status == "failed"  # not with the owner's token
    monkeypatch.delenv("RTDEMO_MAX_MODEL_MB")  # Spaces' limit: measured first, with no token
    private = TeacherChoice("hf", model=PRIVATE, max_tokens=4, limit=1, concurrency=1)
    with pytest.raises(UserError, match=f"cannot check the size of {PRIVATE}: .*sign in"):
        start_generation(ctx, owner, name, private)  # refused before any job
    assert tokens_for(hub, PUBLIC) == {None}
    assert tokens_for(hub, PRIVATE) == {None}
    assert f"Bearer {VISITOR_TOKEN}" in tokens_for(hub, VISITORS)
    assert owner_token_seen(hub) == []


def test_a_visitors_hub_student_is_trained_without_the_owners_token(space, hub):
    ctx = AppContext.from_env(space)
    owner = new_owner()
    name = letters(ctx, owner)
    form = TrainForm(student=PUBLIC, formats="vanilla baseline", max_steps=1, batch_size=2)
    message, _ = start_training(ctx, owner, name, form)
    job = wait_for(partial(finished, ctx, owner, job_of(message)), 180, "the training job")
    assert job.status == "done", job.error
    assert tokens_for(hub, PUBLIC) == {None}
    private = TrainForm(student=PRIVATE, formats="vanilla baseline", run_name="private")
    with pytest.raises(UserError, match=f"cannot check the size of {PRIVATE}: .*sign in"):
        start_training(ctx, owner, name, private)  # refused before any job: no owner's token
    assert tokens_for(hub, PRIVATE) == {None}
    assert owner_token_seen(hub) == []
