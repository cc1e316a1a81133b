"""Reasoning teachers behind one interface (`rtdemo.teachers.base.Teacher`)."""

from rtdemo.teachers.base import (
    Completion,
    Teacher,
    TeacherError,
    TeacherInfo,
    answer_prompt,
    rationale_prompt,
)

__all__ = [
    "Completion",
    "Teacher",
    "TeacherError",
    "TeacherInfo",
    "answer_prompt",
    "rationale_prompt",
]
