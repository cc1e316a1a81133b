"""The Chat tab's handlers, called directly, and its endpoints through `gradio_client`: both sides
streamed on a test question, the gold check, votes saved once per exchange and kept per owner,
the export, keys kept out of everything stored, and the queue rule (the student waits while a
torch job runs).

The student is the untrained tiny student registered as a trained run (no training here: random
weights stream tokens just as well); one torch thread. The local-model teacher is the real
SmolLM2-135M-Instruct (`smollm2-135m`, prepared by scripts/dev), asked for a short answer once.

    .venv/bin/python -m pytest tests/ui/test_chat_tab.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rtdemo.chat import student as chat_student
from rtdemo.chat.teacher import LOCAL_TEACHERS, KeptTeacher
from rtdemo.errors import UserError
from rtdemo.hosting.credentials import user_token
from rtdemo.training.runs import create_run, finish_run
from rtdemo.ui.chat_actions import (
    ChatForm,
    build_teacher,
    chat,
    export_votes,
    find_example,
    random_test_question,
    resolve_student,
    student_choices,
    torch_job_waiting,
    vote,
    votes_table,
)
from rtdemo.ui.chat_view import plain
from rtdemo.ui.experiments import TaskChoice, create_experiment
from rtdemo.ui.session import AppContext
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import wait_for

OTHER = "anon-ffffffffffffffff"
KEY = "sk-" + "chat-key-never-stored-0123456789"
FORM = ChatForm(student_max_tokens=12)
LETTERS = ("last_letter_concatenation", "synthetic", 0, 40, 2, None, "question", "answer", "", 0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from rtdemo.students.loading import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("chat-tab") / "tiny", layers=2, width=64)


def add_trained_run(ctx: AppContext, owner: str, experiment: str, folder: Path, name="cot"):
    """Register `folder` as the trained run `name` of the experiment (a copy in its run folder)."""
    import shutil

    with ctx.store() as store:
        exp = store.get_experiment(experiment, owner)
        run = create_run(store, exp, name, "cot", 1, "tiny", "full", 28, {})
        shutil.copytree(folder, run.output_dir / "final")
        finish_run(store, run, {"steps": 0})


@pytest.fixture
def trained(ui_ctx, owner, letters_experiment, tiny_folder) -> str:
    add_trained_run(ui_ctx, owner, letters_experiment, tiny_folder)
    return letters_experiment


@pytest.fixture
def local_teachers():
    """The app's kept local teachers, empty before and after the test (a loaded model is freed)."""
    LOCAL_TEACHERS.clear()
    yield LOCAL_TEACHERS
    LOCAL_TEACHERS.clear()


def a_test_question(ctx: AppContext, owner: str, experiment: str) -> str:
    with ctx.store() as store:
        return store.questions(store.get_experiment(experiment, owner).id, "test")[0].question


# -- choices -----------------------------------------------------------------------------------


def test_students_are_the_trained_runs_or_a_folder(
    ui_ctx, owner, letters_experiment, tiny_folder, monkeypatch
):
    assert student_choices(ui_ctx, owner, letters_experiment) == []
    question = a_test_question(ui_ctx, owner, letters_experiment)
    with pytest.raises(UserError, match="no trained student yet"):
        next(chat(ui_ctx, owner, letters_experiment, question, FORM))
    add_trained_run(ui_ctx, owner, letters_experiment, tiny_folder, "cot")
    add_trained_run(ui_ctx, owner, letters_experiment, tiny_folder, "cot-2")
    assert student_choices(ui_ctx, owner, letters_experiment) == ["cot-2", "cot"]  # newest first
    with ui_ctx.store() as store:
        exp = store.get_experiment(letters_experiment, owner)
        newest = resolve_student(store, exp, "")
        assert newest.path.endswith("cot-2/final") and newest.format == "cot"
        assert "run cot-2 (Fine-tune-CoT" in newest.label
        folder = resolve_student(store, exp, str(tiny_folder))
        assert folder.path == str(tiny_folder) and "not trained here" in folder.label
        with pytest.raises(UserError, match="no student folder"):
            resolve_student(store, exp, str(tiny_folder / "missing"))
        with monkeypatch.context() as spaces:  # a public Space: no folders of the server
            spaces.setenv("SYSTEM", "spaces")
            with pytest.raises(UserError, match="does not load models from its own disk"):
                resolve_student(store, exp, str(tiny_folder))
            assert resolve_student(store, exp, "cot").format == "cot"  # trained runs are fine
        example = find_example(store, exp, f"  {question} ")
        assert example is not None and example.split == "test"
        assert find_example(store, exp, "What is 2 + 2?") is None
    assert student_choices(ui_ctx, OTHER, None) == []


def test_a_random_question_comes_from_the_test_split(ui_ctx, owner, letters_experiment):
    import random

    with ui_ctx.store() as store:
        exp = store.get_experiment("letters", owner)
        tests = {e.question for e in store.questions(exp.id, "test")}
    rngs = [random.Random(i) for i in range(8)]
    picked = {random_test_question(ui_ctx, owner, letters_experiment, rng) for rng in rngs}
    assert picked <= tests and len(picked) > 1
    with pytest.raises(UserError, match="no experiment named"):
        random_test_question(ui_ctx, OTHER, letters_experiment)


def test_teachers_are_checked_before_anything_runs(monkeypatch):
    with pytest.raises(UserError, match="only answers Coin Flip and Last Letter"):
        build_teacher(ChatForm(), "gsm8k")
    with pytest.raises(UserError, match="model name"):
        build_teacher(ChatForm(teacher="openai"), "gsm8k")
    with pytest.raises(UserError, match="API key"):
        build_teacher(ChatForm(teacher="openai", model="m"), "gsm8k")
    internal = ChatForm(teacher="openai", base_url="http://169.254.169.254/v1", model="m")
    monkeypatch.setenv("SYSTEM", "spaces")
    with pytest.raises(UserError, match=r"own network: 169\.254\.169\.254"):
        build_teacher(internal, "gsm8k", "k")
    assert ChatForm.of("OpenAI-compatible", " u ", " m ", "chat", 0.0, 128.0, "", 9.0) == ChatForm(
        teacher="openai", base_url="u", model="m", student_max_tokens=9
    )


def test_the_local_teacher_is_smollm2_once_prepared_and_named_like_any_model(
    smollm2_folder, tmp_path, monkeypatch, local_teachers
):
    assert ChatForm.of("Local model").teacher == "hf"
    default = build_teacher(ChatForm(teacher="hf"), "gsm8k")  # any task: it is a language model
    assert isinstance(default, KeptTeacher) and not isinstance(default, type(None))
    assert (
        default.info.model == "smollm2-135m" and default.info.label == "smollm2-135m (local model)"
    )
    assert default.inner.model_name == str(smollm2_folder)  # the prepared folder, kept loaded
    assert build_teacher(ChatForm(teacher="hf", model="smollm2-135m"), "x").inner is default.inner
    with monkeypatch.context() as spaces:  # a public Space: names, never folders of the server
        spaces.setenv("SYSTEM", "spaces")
        assert build_teacher(ChatForm(teacher="hf"), "x").info.model == "smollm2-135m"
        with pytest.raises(UserError, match="does not load models from its own disk"):
            build_teacher(ChatForm(teacher="hf", model=str(smollm2_folder)), "x")
        spaces.setenv("RTDEMO_MODELS", str(tmp_path / "empty-cache"))  # not prepared there
        with pytest.raises(UserError, match="the app's host prepares it with `rtdemo models") as e:
            build_teacher(ChatForm(teacher="hf"), "x")
        assert str(tmp_path) not in str(e.value) and "type the local teacher model" in str(e.value)
        with pytest.raises(UserError, match="'smollm2-135m' is not prepared on this server") as e:
            build_teacher(ChatForm(teacher="hf", model="smollm2-135m"), "x")
        assert str(tmp_path) not in str(e.value)
    monkeypatch.setenv("RTDEMO_MODELS", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match="run `rtdemo models prepare smollm2-135m` on this machine"):
        build_teacher(ChatForm(teacher="hf", model="smollm2-135m"), "x")


def test_a_local_teacher_waits_for_a_running_torch_job_like_the_student(
    ui_ctx, owner, trained, smollm2_folder, monkeypatch, local_teachers
):
    import torch

    # The CPU rule: a model in the app process does not generate beside a torch job. Neither
    # side generates here (both say busy), so the model is never loaded.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(chat_student, "WAIT_POLL_S", 0.05)
    monkeypatch.setenv("RTDEMO_CHAT_WAIT_S", "0.3")
    job = _training_that_runs(ui_ctx)
    assert torch_job_waiting(ui_ctx, "local teacher").endswith(
        "(on this CPU machine the local teacher answers after it: two torch workloads would "
        "slow each other down)"
    )
    form = ChatForm(teacher="hf", teacher_max_tokens=8, student_max_tokens=8)
    question = a_test_question(ui_ctx, owner, trained)
    views, deadline = [], time.monotonic() + 60  # generous: both say "busy" after 0.3 s
    for view in chat(ui_ctx, owner, trained, question, form):
        views.append(view)
        assert time.monotonic() < deadline, "the local teacher kept waiting"
    assert any(f"waiting for training job {job}" in v.teacher_status for v in views)
    final = views[-1]
    assert f"⚠️ busy: training job {job} is using this CPU machine" in final.teacher_status
    assert "a local teacher beside it" in final.teacher_status
    assert "teacher is not held up" not in final.teacher_status
    assert "⚠️ busy" in final.student_status and not final.teacher_rationale
    assert "teacher is not held up" not in final.student_status  # it is: it waited too
    assert final.exchange["settings"]["teacher"]["kind"] == "hf"
    assert not local_teachers.get("smollm2-135m", user_token(None)).loaded


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("student_max_tokens", 10**9, "student's max tokens must be between 1 and 1024"),
        ("teacher_max_tokens", 5000, "teacher's max tokens must be between 1 and 1024"),
        ("teacher_max_tokens", -1, "teacher's max tokens"),
        ("temperature", 7.0, "temperature must be between 0 and 2"),
    ],
)
def test_a_chats_sizes_are_bounded_before_anything_runs(field, value, message):
    # A public Space: one visitor's chat must not hold the CPU lock (or a teacher's bill) forever.
    with pytest.raises(UserError, match=message):
        ChatForm.of(**{field: value})


def test_a_very_long_question_is_refused_before_anything_runs(ui_ctx, owner, letters_experiment):
    with pytest.raises(UserError, match="at most 4,000"):
        next(chat(ui_ctx, owner, letters_experiment, "x" * 4001, ChatForm()))


def test_model_text_in_markdown_is_escaped():
    shown = plain("<img src=x onerror=alert(1)> *bold* [a](javascript:x)")
    assert "<img" not in shown and "&lt;img" in shown
    assert "\\*bold\\*" in shown and "\\[a\\](" in shown


# -- the exchange, the vote, the export ----------------------------------------------------------


def test_both_sides_stream_on_a_test_question_with_the_gold_check(ui_ctx, owner, trained):
    question = a_test_question(ui_ctx, owner, trained)
    views = list(chat(ui_ctx, owner, trained, question, FORM))
    students = [v.student_rationale for v in views if v.student_rationale]
    assert len(set(students)) >= 2  # the student's text grew over several updates
    assert any(v.teacher_rationale and v.exchange is None for v in views)
    final = views[-1]
    assert final.exchange is not None and all(v.exchange is None for v in views[:-1])
    assert "So the answer is" in final.teacher_rationale and final.teacher_answer
    assert final.teacher_status.startswith("**Teacher** · Built") and "answer read:" in (
        final.teacher_status
    )
    assert "**Student** · run cot" in final.student_status and "❌ wrong" in final.student_status
    assert final.gold.startswith("Gold answer (test question #") and "student ❌" in final.gold
    record = final.exchange
    assert record["question"] == question and record["split"] == "test"
    assert record["settings"]["student"]["max_new_tokens"] == 12
    assert record["experiment"] == "letters"


def test_a_vote_is_saved_once_and_kept_for_its_owner(ui_ctx, owner, trained):
    question = a_test_question(ui_ctx, owner, trained)
    record = list(chat(ui_ctx, owner, trained, question, FORM))[-1].exchange
    with pytest.raises(UserError, match="ask a question first"):
        vote(ui_ctx, owner, None, "left")
    with pytest.raises(UserError, match="a vote is one of"):
        vote(ui_ctx, owner, record, "sideways")
    message, voted = vote(ui_ctx, owner, record, "left")
    assert message == "Vote #1 saved: teacher (left) better." and voted["voted"] == 1
    with pytest.raises(UserError, match="has a vote already"):
        vote(ui_ctx, owner, voted, "right")
    # Another owner can neither vote on it (no such experiment of theirs) nor see it.
    with pytest.raises(UserError, match="no experiment named"):
        vote(ui_ctx, OTHER, record, "right")
    create_experiment(ui_ctx, OTHER, "letters", TaskChoice(*LETTERS[:5]))
    assert votes_table(ui_ctx, OTHER, "letters").empty
    with pytest.raises(UserError, match="no votes on letters yet"):
        export_votes(ui_ctx, OTHER, "letters")
    table = votes_table(ui_ctx, owner, trained)
    mark = "✅" if record["teacher"]["correct"] else "❌"
    row = table.values.tolist()[0]
    assert row[2:6] == ["teacher (left) better", question, record["gold"], mark]
    path, note = export_votes(ui_ctx, owner, trained)
    [line] = [json.loads(x) for x in path.read_text().splitlines()]
    assert note == "Exported 1 vote(s) with their exchanges."
    assert line["vote"] == "left" and line["question"] == question and line["gold"]
    assert line["student"]["output"] == record["student"]["output"]
    # The student by its name, never its folder on the server.
    assert line["settings"]["student"]["name"] == "run cot (Fine-tune-CoT, tiny)"
    assert "path" not in line["settings"]["student"]
    assert str(ui_ctx.workspace) not in path.read_text()


def test_a_run_trained_from_a_folder_is_labelled_by_the_folders_name(
    ui_ctx, owner, letters_experiment, tiny_folder
):
    with ui_ctx.store() as store:
        exp = store.get_experiment(letters_experiment, owner)
        run = create_run(store, exp, "cot", "cot", 1, str(tiny_folder), "full", 28, {})
        finish_run(store, run, {"steps": 0})
        spec = resolve_student(store, exp, "cot")
    assert spec.label == f"run cot (Fine-tune-CoT, {tiny_folder.name})"
    assert str(tiny_folder.parent) not in spec.label


def test_an_api_teacher_streams_and_its_key_is_never_stored(ui_ctx, owner, trained):
    question = a_test_question(ui_ctx, owner, trained)
    with FakeOpenAIServer(api_key=KEY) as server:
        form = ChatForm(teacher="openai", base_url=server.base_url, model="fake-model")
        form = ChatForm(**{**form.__dict__, "student_max_tokens": 8})
        with pytest.raises(UserError, match="API key"):
            next(chat(ui_ctx, owner, trained, question, form, ""))
        final = list(chat(ui_ctx, owner, trained, question, form, KEY))[-1]
    assert final.teacher_answer == "42." and "fake-model @ 127.0.0.1" in final.teacher_status
    assert final.exchange["settings"]["teacher"]["model"] == "fake-model"
    vote(ui_ctx, owner, final.exchange, "both_bad")
    path, _ = export_votes(ui_ctx, owner, trained)
    assert KEY not in path.read_text()
    stored = b"".join(p.read_bytes() for p in ui_ctx.workspace.glob("rtdemo.sqlite3*"))
    assert KEY.encode() not in stored


def test_credentials_in_the_teachers_base_url_are_used_and_never_shown_or_stored(
    ui_ctx, owner, trained
):
    question, password = a_test_question(ui_ctx, owner, trained), "pw-chat-0123456789"
    with FakeOpenAIServer(api_key=None) as server:  # the credentials arrive as basic auth
        url = server.base_url.replace("http://", f"http://user:{password}@")
        redacted = server.base_url.replace("http://", "http://***@")
        form = ChatForm(teacher="openai", base_url=url, model="fake-model", student_max_tokens=8)
        final = list(chat(ui_ctx, owner, trained, question, form, KEY))[-1]
        assert server.requests and all(
            r.headers.get("authorization", "").startswith("Basic ") for r in server.requests
        )
    assert final.teacher_answer == "42." and password not in final.teacher_status
    assert final.exchange["settings"]["teacher"]["base_url"] == redacted
    vote(ui_ctx, owner, final.exchange, "tie")
    path, _ = export_votes(ui_ctx, owner, trained)
    assert redacted in path.read_text() and password not in path.read_text()
    stored = b"".join(p.read_bytes() for p in ui_ctx.workspace.glob("rtdemo.sqlite3*"))
    assert password.encode() not in stored


def _running_job(ctx: AppContext, kind: str = "train") -> int:
    """A torch job of another owner, running (fresh heartbeat), as the store records one."""
    with ctx.store() as store, store.transaction() as conn:
        return conn.execute(
            "INSERT INTO jobs (owner, kind, status, argv, run_dir, heartbeat_at, created_at, "
            "started_at) VALUES (?, ?, 'running', '[]', 'runs/x', ?, 'now', 'now')",
            (OTHER, kind, time.time()),
        ).lastrowid


def test_with_a_gpu_the_student_does_not_wait_for_torch_jobs(ui_ctx, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _running_job(ui_ctx, "train")
    assert torch_job_waiting(ui_ctx) is None


def test_the_student_waits_for_a_running_torch_job(ui_ctx, owner, trained, monkeypatch):
    import torch

    # The CPU rule (one torch workload at a time), whatever this machine has.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(chat_student, "WAIT_POLL_S", 0.05)
    assert torch_job_waiting(ui_ctx) is None
    job = _running_job(ui_ctx, "train")
    assert torch_job_waiting(ui_ctx).startswith(f"waiting for training job {job} to finish…")
    views = chat(ui_ctx, owner, trained, a_test_question(ui_ctx, owner, trained), FORM)
    seen = []
    for view in views:
        seen.append(view)
        answered = "✅" in view.teacher_status or "❌" in view.teacher_status
        if answered and "waiting for" in view.student_status:
            break  # the teacher answered while the student waits
    assert f"⏳ waiting for training job {job} to finish" in seen[-1].student_status
    assert not seen[-1].student_rationale
    with ui_ctx.store() as store, store.transaction() as conn:
        conn.execute("UPDATE jobs SET status = 'done' WHERE id = ?", (job,))
    final = list(views)[-1]
    assert final.exchange is not None and final.student_rationale
    evaluation = _running_job(ui_ctx, "evaluate")
    assert f"evaluation job {evaluation}" in torch_job_waiting(ui_ctx)


# -- through gradio_client ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_client_chats_votes_and_exports(client, tmp_path, tiny_folder):
    ctx = AppContext.from_env(tmp_path / "workspace")
    client.predict("letters", *LETTERS, api_name="/create_experiment")
    add_trained_run(ctx, client.owner, "letters", tiny_folder)
    question, message = client.predict("letters", api_name="/random_test_question")
    assert question and message == ""
    settings = ("built-in (offline)", "", "", "chat", 0, 128, "cot", 12, "")
    job = client.submit("letters", question, *settings, api_name="/chat")
    updates = list(job)
    final = job.result()
    assert len(updates) >= 3
    students = [u[5] for u in updates if u[5]]
    assert len(set(students)) >= 2  # the student's pane grew while streaming
    _, _, t_rationale, t_answer, _, s_rationale, _, gold = final[:8]
    assert "So the answer is" in t_rationale and t_answer and s_rationale
    assert gold.startswith("Gold answer (test question #")
    message, *_ = client.predict("right", "letters", api_name="/chat_vote")
    assert message == "Vote #1 saved: student (right) better."
    again, *_ = client.predict("tie", "letters", api_name="/chat_vote")
    assert again.startswith("⚠️ this exchange has a vote already")
    path, note = client.predict("letters", api_name="/chat_export")
    assert note == "Exported 1 vote(s) with their exchanges."
    [line] = [json.loads(x) for x in Path(path).read_text().splitlines()]
    assert line["vote"] == "right" and line["question"] == question


def test_the_prepared_smollm2_is_a_student_by_its_name(
    ui_ctx, owner, letters_experiment, smollm2_folder, monkeypatch
):
    monkeypatch.setenv("SYSTEM", "spaces")  # a name, not a folder: a visitor may use it too
    with ui_ctx.store() as store:
        exp = store.get_experiment(letters_experiment, owner)
        spec = resolve_student(store, exp, "smollm2-135m")
    assert spec == chat_student.StudentSpec(
        "smollm2-135m", "cot", "smollm2-135m (not trained here: read as Fine-tune-CoT)"
    )


def test_a_local_teacher_that_cannot_load_says_why_and_the_student_answers(
    ui_ctx, owner, trained, local_teachers
):
    form = ChatForm(teacher="hf", model="org/not-in-the-cache", student_max_tokens=8)
    question = a_test_question(ui_ctx, owner, trained)
    final = list(chat(ui_ctx, owner, trained, question, form))[-1]  # offline: no Hub here
    assert "**Teacher** · org/not-in-the-cache (local model) · ⚠️" in final.teacher_status
    assert "needs network or a local copy" in final.teacher_status
    assert final.student_rationale and final.exchange is not None


@pytest.mark.slow
def test_a_client_chats_with_the_local_smollm2_teacher(
    client, tmp_path, tiny_folder, smollm2_folder, local_teachers
):
    """The real SmolLM2-135M-Instruct as the Chat tab's local teacher, through `gradio_client`:
    its rationale streams, it answers, and it stays loaded for the next question."""
    ctx = AppContext.from_env(tmp_path / "workspace")
    client.predict("letters", *LETTERS, api_name="/create_experiment")
    add_trained_run(ctx, client.owner, "letters", tiny_folder)
    question = a_test_question(ctx, client.owner, "letters")
    # The model box left empty: smollm2-135m, prepared here, is the local teacher by default.
    settings = ("Local model", "", "", "chat", 0, 24, "cot", 8, "")
    job = client.submit("letters", question, *settings, api_name="/chat")
    updates = list(job)
    final = job.result()
    rationales = [u[2] for u in updates if u[2]]
    assert len(set(rationales)) >= 3, rationales  # the teacher's pane grew token by token
    t_status, t_rationale, t_answer, gold = final[1], final[2], final[3], final[7]
    assert t_status.startswith("**Teacher** · smollm2-135m (local model) ·"), t_status
    assert ("answer read:" in t_status or "no answer found" in t_status) and "⚠️" not in t_status
    assert t_rationale.strip() and t_answer.strip()
    assert gold.startswith("Gold answer (test question #") and "teacher" in gold
    # It stays loaded for the next question (a chat never closes it).
    assert len(local_teachers) == 1
    assert local_teachers.get("smollm2-135m", user_token(None)).loaded
    message, *_ = client.predict("left", "letters", api_name="/chat_vote")
    assert message == "Vote #1 saved: teacher (left) better."
    path, _ = client.predict("letters", api_name="/chat_export")
    [line] = [json.loads(x) for x in Path(path).read_text().splitlines()]
    teacher = line["settings"]["teacher"]
    assert teacher["kind"] == "hf" and teacher["model"] == "smollm2-135m"
    assert teacher["max_tokens"] == 24 and t_rationale in line["teacher"]["output"]
    assert str(smollm2_folder) not in Path(path).read_text()  # never the server's folder


# -- chats never wait for each other (fair use of the machine) -----------------------------------


def _training_that_runs(ctx: AppContext) -> int:
    """A training job of another owner recorded as running, its heartbeat ahead of time (it never
    goes stale while the test runs, however slow the machine)."""
    with ctx.store() as store, store.transaction() as conn:
        return conn.execute(
            "INSERT INTO jobs (owner, kind, status, argv, run_dir, heartbeat_at, created_at, "
            "started_at) VALUES (?, 'train', 'running', '[]', 'runs/x', ?, 'now', 'now')",
            (OTHER, time.time() + 3600),
        ).lastrowid


def _end(ctx: AppContext, job: int) -> None:
    with ctx.store() as store, store.transaction() as conn:
        conn.execute("UPDATE jobs SET status = 'done' WHERE id = ?", (job,))


def test_a_student_that_waited_long_enough_says_busy(ui_ctx, owner, trained, monkeypatch):
    import torch

    from rtdemo.ui.chat_actions import max_chats, student_wait_s

    assert (max_chats({}), student_wait_s({})) == (8, 60.0)  # the defaults
    assert max_chats({"RTDEMO_MAX_CHATS": "0"}) is None  # no limit
    with pytest.raises(UserError, match="RTDEMO_CHAT_WAIT_S='soon'"):
        student_wait_s({"RTDEMO_CHAT_WAIT_S": "soon"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU rule
    monkeypatch.setattr(chat_student, "WAIT_POLL_S", 0.05)
    monkeypatch.setenv("RTDEMO_CHAT_WAIT_S", "0.2")
    job = _training_that_runs(ui_ctx)
    views, deadline = [], time.monotonic() + 60  # generous: it says "busy" after 0.2 s
    for view in chat(ui_ctx, owner, trained, a_test_question(ui_ctx, owner, trained), FORM):
        views.append(view)
        assert time.monotonic() < deadline, "the student kept waiting"
    assert any(f"waiting for training job {job}" in v.student_status for v in views)
    final = views[-1]
    assert f"⚠️ busy: training job {job} is using this CPU machine" in final.student_status
    assert "Regenerate" in final.student_status and not final.student_rationale
    assert "answer read" in final.teacher_status and final.exchange is not None
    _end(ui_ctx, job)  # once it has ended, the student answers again
    final = list(chat(ui_ctx, owner, trained, a_test_question(ui_ctx, owner, trained), FORM))[-1]
    assert final.student_rationale and "busy" not in final.student_status


@pytest.mark.slow
def test_two_visitors_chat_at_once_while_a_training_runs(
    client, tmp_path, tiny_folder, monkeypatch
):
    """Issue: a chat whose student waited for a training held the only chat slot, and another
    visitor's chat stayed queued until the training ended. Now both teachers answer while both
    students wait; a second question from the same page ends that page's first exchange."""
    import torch
    from gradio_client import Client

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU rule, in the app
    monkeypatch.setenv("RTDEMO_CHAT_WAIT_S", "600")  # the students wait (no "busy" here)
    ctx = AppContext.from_env(tmp_path / "workspace")
    other = Client(client.src, verbose=False)
    other.owner = other.predict(None, None, api_name="/session")[0].partition(".")[0]
    settings = ("built-in (offline)", "", "", "chat", 0, 128, "cot", 12, "")
    questions = {}
    for visitor in (client, other):
        visitor.predict("letters", *LETTERS, api_name="/create_experiment")
        add_trained_run(ctx, visitor.owner, "letters", tiny_folder)
        questions[visitor] = a_test_question(ctx, visitor.owner, "letters")
    job = _training_that_runs(ctx)

    def answered_while_waiting(exchange) -> bool:
        shown = exchange.outputs()
        if not shown:
            return False
        teacher, student = shown[-1][1], shown[-1][4]
        return "answer read" in teacher and f"waiting for training job {job}" in student

    first = client.submit("letters", questions[client], *settings, api_name="/chat")
    wait_for(lambda: answered_while_waiting(first), what="the first visitor's teacher")
    second = other.submit("letters", questions[other], *settings, api_name="/chat")
    # Generous: before the fix this never happened while the training ran.
    wait_for(lambda: answered_while_waiting(second), what="the other visitor's teacher, at once")
    assert not first.done() and not second.done()  # both students are waiting, side by side

    again = client.submit("letters", questions[client], *settings, api_name="/chat")
    stopped = first.result(timeout=60)  # a page's new question ends its exchange before
    assert "stopped before it answered" in stopped[4] and "answer read" in stopped[1]
    wait_for(lambda: answered_while_waiting(again), what="the page's new exchange")

    _end(ctx, job)  # the training ends: both students answer
    for exchange in (again, second):
        final = exchange.result(timeout=120)
        assert final[5] and "⏳" not in final[4] and "⚠️" not in final[4], final[4]
