"""The chat's local-model teacher: a transformers model run in the app process, loaded once.

    teacher = LOCAL_TEACHERS.get("smollm2-135m")           # a `KeptTeacher`
    for side in teacher_side(teacher, question, stop=stop):  # rtdemo.chat.session
        print(side.rationale)

A chat builds its teacher for every question; a local model would be loaded (and, through
`Teacher.aclose`, freed) each time. `TeacherCache` keeps the loaded `LocalHFTeacher`s instead, per
model and Hub token, like the students' `StudentCache`: the least recently used goes (it is freed
once no exchange uses it any more), and a model one user's Hub token fetched is never handed to
another. What a chat gets is a `KeptTeacher`: the cached teacher under the name the user typed
(never the server's folder of a prepared model) whose `aclose` leaves the model loaded.

The teacher streams call 1 through `LocalHFTeacher.stream` (on the CPU too) and answers call 2
greedily; one model generates one request at a time (its own lock), so two chats with the same
local teacher take turns. The model loads with `KeptTeacher.load` (a chat loads it before its
first call), one load at a time with the students' (`rtdemo.chat.student.LOADING`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path

from rtdemo.chat.student import LOADING
from rtdemo.hosting.access import looks_like_path
from rtdemo.models import resolve_model_name
from rtdemo.teachers.base import Completion, Teacher, TeacherInfo
from rtdemo.teachers.local_hf import LocalHFTeacher


class KeptTeacher(Teacher):
    """A cached local teacher as one chat uses it: its calls, a label for people, no `aclose`."""

    def __init__(self, inner: LocalHFTeacher, name: str) -> None:
        self.inner = inner
        self.supports_n = inner.supports_n
        shown = Path(name).name if looks_like_path(name) else name  # never a server folder
        self.info = TeacherInfo(kind="hf", model=shown, label=f"{shown} (local model)")

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded already (the first call loads it)."""
        return self.inner.device is not None

    def load(self) -> None:
        """Load the model now (blocking), one load at a time with the chat's students
        (`rtdemo.chat.student.LOADING`); `UserError` when it cannot be loaded."""
        with LOADING:
            if not self.loaded:  # another chat may have loaded it meanwhile
                self.inner.load()

    async def rationale(
        self, prompt: str, *, n: int, temperature: float, max_tokens: int
    ) -> list[Completion]:
        return await self.inner.rationale(
            prompt, n=n, temperature=temperature, max_tokens=max_tokens
        )

    async def answer(self, prompt: str, *, max_tokens: int) -> Completion:
        return await self.inner.answer(prompt, max_tokens=max_tokens)

    async def stream(
        self, prompt: str, *, temperature: float, max_tokens: int
    ) -> AsyncIterator[str]:
        pieces = self.inner.stream(prompt, temperature=temperature, max_tokens=max_tokens)
        try:
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Nothing: the model stays loaded for the next question (`TeacherCache` frees it)."""


class TeacherCache:
    """Local teachers kept loaded, per model and Hub token; the least recently used goes."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = capacity
        self._teachers: OrderedDict[tuple[str, str | bool | None], LocalHFTeacher] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, token: str | bool | None = None) -> KeptTeacher:
        """The local teacher `name` (a prepared registry name, a Hub id or a model folder) for a
        user whose Hub token is `token` (False: none; None: this machine's). Nothing loads here;
        an unprepared registry name is a `UserError` that says how to prepare it."""
        model = resolve_model_name(name.strip())
        key = (model, token)
        with self._lock:
            teacher = self._teachers.get(key)
            if teacher is None:
                teacher = self._teachers[key] = LocalHFTeacher(model, token=token)
                while len(self._teachers) > self.capacity:
                    # Dropped, not closed: an exchange still using it finishes, then it is freed.
                    self._teachers.popitem(last=False)
            self._teachers.move_to_end(key)
        return KeptTeacher(teacher, name.strip())

    def __len__(self) -> int:
        return len(self._teachers)

    def clear(self) -> None:
        """Forget every kept teacher."""
        with self._lock:
            self._teachers.clear()


LOCAL_TEACHERS = TeacherCache()
