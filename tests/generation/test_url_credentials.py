"""A teacher base URL with credentials (`http://user:secret@host/v1`): the teacher uses them,
but its label, errors, the samples it stores and a job's command line hold the URL redacted; a
background job gets the whole URL through its environment (`rtdemo.redaction`)."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.generation.request import GenerationRequest, generation_plan
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import SampleKey, load_samples
from rtdemo.redaction import URL_ENV
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.base import TeacherError
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.teachers.spec import KEY_ENV, TeacherSpec
from rtdemo.workspace.store import Store
from tests.fakes.openai_server import FakeOpenAIServer, coin_flip_responder
from tests.helpers import kill_job_processes

PASSWORD = "pw-" + "s3cret" * 3
KEY = "sk-test-url-credentials"
BASIC = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()


@pytest.fixture
def server():
    # Any key: the credentials in the URL are what the server sees (as HTTP basic auth).
    with FakeOpenAIServer(api_key=None, responder=coin_flip_responder) as s:
        yield s


def with_credentials(url: str, password: str = PASSWORD) -> str:
    return url.replace("http://", f"http://user:{password}@")


def shown(url: str) -> str:
    return url.replace("http://", "http://***@")


def no_password_under(folder: Path) -> None:
    leaks = [p for p in folder.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert leaks == [], f"the URL's password leaked into {leaks}"


def test_the_teacher_uses_the_credentials_and_shows_none(server):
    teacher = OpenAITeacher("fake-model", base_url=with_credentials(server.base_url), api_key=KEY)
    assert teacher.info.base_url == shown(server.base_url)
    assert teacher.info.label == f"fake-model @ 127.0.0.1:{server.port}"
    assert PASSWORD not in repr(teacher)
    asyncio.run(teacher.answer("Q: Is the coin still heads up?\nA:", max_tokens=8))
    assert server.requests[0].headers.get("authorization") == BASIC


def test_an_unreachable_server_is_named_without_its_credentials():
    teacher = OpenAITeacher(
        "fake-model", base_url=f"http://user:{PASSWORD}@127.0.0.1:9/v1", api_key=KEY, timeout=5
    )
    with pytest.raises(TeacherError, match="connection to the teacher server") as err:
        asyncio.run(teacher.answer("Q: x\nA:", max_tokens=8))
    assert PASSWORD not in str(err.value) and "http://***@127.0.0.1:9/v1" in str(err.value)


def test_samples_store_the_redacted_url_and_other_credentials_resume_them(server, tmp_path):
    questions = generate("coin_flip", SyntheticSettings(size=20), "train")[:5]
    settings = GenerationSettings(samples=2, temperature=0.7, backoff=0.01)
    with Store(tmp_path / "ws") as store:
        exp = store.create_experiment("e", "coin_flip")
        store.add_questions(exp.id, questions)
        teacher = OpenAITeacher("fake-model", with_credentials(server.base_url), api_key=KEY)
        stats = run_generation(
            store, exp, teacher, settings, questions, TASKS["coin_flip"].answer, None
        )
        assert stats.done == 10
        samples = load_samples(store, exp.id)
        assert {s.base_url for s in samples} == {shown(server.base_url)}
        key = SampleKey.of(teacher.info, 0.7, settings.max_tokens)
        assert key.base_url == shown(server.base_url)
        assert len(load_samples(store, exp.id, key)) == 10
        # The same server with other credentials: the same samples, nothing requested again.
        sent = server.requests_total
        other = OpenAITeacher("fake-model", with_credentials(server.base_url, "another"), KEY)
        again = run_generation(
            store, exp, other, settings, questions, TASKS["coin_flip"].answer, None
        )
        assert again.done == 10 and server.requests_total == sent
    no_password_under(tmp_path)


def test_a_jobs_command_line_has_the_url_redacted_and_its_environment_the_whole(tmp_path):
    whole = f"http://user:{PASSWORD}@teacher.example:8000/v1"
    request = GenerationRequest("e", TeacherSpec("openai", model="m", base_url=whole))
    argv = request.argv()
    assert argv[argv.index("--base-url") + 1] == "http://***@teacher.example:8000/v1"
    assert PASSWORD not in " ".join(argv)
    with Store(tmp_path / "ws") as store:
        exp = store.create_experiment("e", "coin_flip")
        store.add_questions(exp.id, generate("coin_flip", SyntheticSettings(size=10), "train"))
        plan = generation_plan(store, request, "local", api_key=KEY)
        assert PASSWORD not in " ".join(plan.argv)
        assert plan.env == {KEY_ENV: KEY, URL_ENV: whole}
        assert plan.env_names == [KEY_ENV, URL_ENV]
        plain = GenerationRequest("e", TeacherSpec("openai", model="m", base_url="http://h/v1"))
        assert generation_plan(store, plain, "local", api_key=KEY).env_names == [KEY_ENV]
        # A request read back from a command line has only the redacted URL: refused at once,
        # rather than a job that would fail to authenticate.
        back = GenerationRequest.from_argv(argv)
        hidden = r"base URL http://\*\*\*@teacher.example.*never stored"
        with pytest.raises(UserError, match=hidden):
            generation_plan(store, back, "local", api_key=KEY)


def _wait_job(ws: Path, job_id: int, timeout: float = 120):
    from rtdemo.jobs.runner import get_job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Store(ws) as store:
            job = get_job(store, job_id)
        if job.status in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job.status}")


@pytest.mark.slow
def test_a_background_job_reaches_the_server_with_credentials_that_stay_off_disk(
    tmp_path, server, run_cli
):
    ws = tmp_path / "ws"
    args = ["generate", "--task", "coin_flip", "--limit", "5", "--teacher", "openai"]
    args += ["--model", "fake-model", "--samples", "2", "--temperature", "0.7"]
    args += [
        "--base-url",
        with_credentials(server.base_url),
        "--workspace",
        ws,
        "--experiment",
        "e",
    ]
    try:
        out = run_cli(*args, "--background", env={KEY_ENV: KEY, "RTDEMO_JOB_HEARTBEAT_S": "0.2"})
        assert out.returncode == 0, out.stderr
        job = _wait_job(ws, int(out.stdout.split("started job ")[1].split()[0]))
    finally:
        kill_job_processes(ws)
    assert job.status == "done", (job.error, (job.run_dir / "log.txt").read_text())
    assert job.argv[job.argv.index("--base-url") + 1] == shown(server.base_url)
    assert sorted(job.env_names) == sorted([KEY_ENV, URL_ENV])
    # The job had the whole URL: every request carried the credentials.
    assert {r.headers.get("authorization") for r in server.requests} == {BASIC}
    shown_jobs = run_cli("jobs", "show", job.id, "--workspace", ws)
    assert shown(server.base_url) in shown_jobs.stdout
    assert PASSWORD not in out.stdout + out.stderr + shown_jobs.stdout + shown_jobs.stderr
    no_password_under(tmp_path)
