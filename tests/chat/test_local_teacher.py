"""The chat's local-model teacher (`rtdemo.chat.teacher`): kept per model and Hub token, under the
name the user typed, never closed by a chat; nothing loads until it is asked (no model here: the
real SmolLM2 teacher runs in tests/ui/test_chat_tab.py).

    .venv/bin/python -m pytest tests/chat/test_local_teacher.py
"""

from __future__ import annotations

import asyncio

import pytest

from rtdemo.chat.teacher import KeptTeacher, TeacherCache
from rtdemo.errors import UserError
from rtdemo.teachers.local_hf import LocalHFTeacher


def test_a_teacher_is_kept_per_model_and_token_and_the_least_recent_goes():
    cache = TeacherCache(capacity=2)
    first = cache.get("org/model-a")
    assert isinstance(first, KeptTeacher) and isinstance(first.inner, LocalHFTeacher)
    assert not first.loaded  # nothing loads until the teacher is asked
    assert cache.get(" org/model-a ").inner is first.inner  # the same model: the same teacher
    mine, theirs = cache.get("org/model-a", "hf_mine"), cache.get("org/model-a", "hf_theirs")
    # A model fetched with one user's token is never another's.
    assert mine.inner is not theirs.inner and mine.inner is not first.inner
    assert len(cache) == 2  # the least recently used (no token) went
    assert cache.get("org/model-a").inner is not first.inner
    cache.clear()
    assert len(cache) == 0


def test_a_kept_teacher_is_named_as_typed_and_a_chat_does_not_close_it(tmp_path):
    folder = tmp_path / "models" / "my-model"
    folder.mkdir(parents=True)
    kept = TeacherCache().get(str(folder))
    # Its name and label never show the server's folder.
    assert kept.info.model == "my-model" and kept.info.label == "my-model (local model)"
    assert kept.info.kind == "hf" and str(tmp_path) not in repr(kept.info)

    closed = []

    async def aclose() -> None:
        closed.append(True)

    kept.inner.aclose = aclose  # what would free the model
    asyncio.run(kept.aclose())
    assert closed == []


def test_an_unprepared_registry_name_says_how_to_prepare_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RTDEMO_MODELS", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match="rtdemo models prepare smollm2-135m"):
        TeacherCache().get("smollm2-135m")


def test_models_load_one_at_a_time_students_and_local_teachers_together(monkeypatch):
    """Issue: a chat's SmolLM2 student (a LoRA adapter: PEFT builds it with
    `nn.Module.register_parameter` patched for the whole process) loaded while its SmolLM2 teacher
    loaded in the other thread, and the student failed with "Cannot copy out of meta tensor"."""
    import threading
    import time

    from rtdemo.chat import student as chat_student

    inside, most = [0], [0]
    count = threading.Lock()

    def loading(*args, **kwargs):
        with count:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.3)  # long enough for the other thread to arrive meanwhile
        with count:
            inside[0] -= 1
        return "model", "tokenizer", "causal"

    monkeypatch.setattr(chat_student, "load_student", loading)
    teacher = TeacherCache().get("org/teacher")
    monkeypatch.setattr(teacher.inner, "load", loading)
    students = chat_student.StudentCache()
    threads = [
        threading.Thread(target=teacher.load),
        threading.Thread(target=students.get, args=("org/student",)),
        threading.Thread(target=chat_student.StudentCache().get, args=("org/other",)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1  # never two loads at once
    assert students.loaded("org/student")
