"""The Chat tab in a real browser (Playwright + Debian's Chromium) against `python app.py`.

A person creates an experiment, lets the built-in teacher write rationales, trains the tiny
student a few steps (Fine-tune-CoT), then chats: a random test question, both panes streaming,
the gold check, a vote saved; while a training job runs the student waits and says so. Hostile
model text is shown as text and runs nothing.

    .venv/bin/python -m pytest tests/ui/test_browser_chat.py
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from rtdemo.workspace.store import Store
from tests.ui.browser import (
    app_server,
    create_experiment,
    fill_all,
    generate_with_builtin_teacher,
    open_tab,
    page_owner,
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Each word has no space, so the built-in teacher repeats it verbatim in its rationale.
HOSTILE = (
    'Take the last letters of each words in "<script>alert(1)</script> '
    '<img/src=x/onerror=alert(1)>" and concatenate them.'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("browser-chat") / "workspace"
    workspace.mkdir()
    with app_server(workspace, OMP_NUM_THREADS="1") as url:
        yield url, workspace


def visible(page, locator):
    """The first visible match (hidden tabs hold components with the same labels)."""
    return locator.filter(visible=True).first


def field(page, label: str):
    return visible(page, page.get_by_label(label, exact=True))


def button(page, name: str):
    return visible(page, page.get_by_role("button", name=name, exact=True))


def test_a_user_chats_with_the_trained_student_and_votes(server, browser):
    url, workspace = server
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(url)
        page.get_by_text("owner id").wait_for()
        create_experiment(page, "chat", "last_letter_concatenation", size=20)
        generate_with_builtin_teacher(page)

        open_tab(page, "Train")
        page.get_by_label("Fine-tune-CoT", exact=True).check()
        fill_all(page, {"Max steps": "4"})
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*done")).wait_for(timeout=240_000)

        chat_panel = open_tab(page, "Chat")
        button(page, "↻ Students").click()
        expect(field(page, "Student")).to_have_value("cot")
        # A 4-step student never writes its end token: keep its answers short.
        visible(page, page.get_by_text("OpenAI-compatible teacher, and generation")).click()
        fill_all(chat_panel, {"Student max new tokens": "48"})
        button(page, "🎲 Random test question").click()
        question = field(page, "Question")
        expect(question).to_have_value(re.compile(r"Take the last letters"))
        button(page, "Send").click()

        # The gold line names the verdicts once both sides have answered.
        checked = re.compile(r"Gold answer \(test question #\d+\): .+ · teacher (✅|❌) · student")
        gold = visible(page, page.get_by_text(checked))
        gold.wait_for(timeout=120_000)
        expect(field(page, "Teacher's rationale")).to_have_value(re.compile(r"answer is"))
        expect(field(page, "Student's rationale")).not_to_have_value("")
        assert page.get_by_text("**Student**").count() == 0  # Markdown rendered, not raw
        expect(visible(page, page.get_by_text(re.compile(r"Student · run cot")))).to_be_visible()
        shot(page, "20-chat-gold-check")

        button(page, "👉 Student better").click()
        visible(
            page, page.get_by_text(re.compile(r"Vote #\d+ saved: student \(right\)"))
        ).wait_for()
        owner = page_owner(page, workspace)
        with Store(workspace) as store:
            exp = store.get_experiment("chat", owner)
            rows = store.read(
                "SELECT vote, question, gold FROM chat_votes WHERE owner = ? AND experiment_id = ?",
                (owner, exp.id),
            )
        assert len(rows) == 1 and rows[0][0] == "right" and rows[0][2]
        assert rows[0][1] == question.input_value()
        visible(page, page.get_by_text("Your votes on this experiment")).click()
        expect(visible(page, page.get_by_label("Votes", exact=True))).to_contain_text(
            "student (right) better"
        )
        shot(page, "21-chat-vote-saved")

        # The queue rule: while a training job runs, the student waits (and says so); the
        # teacher answers meanwhile.
        open_tab(page, "Train")
        fill_all(page, {"Run name": "long", "Max steps": "3000"})
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*running")).wait_for(timeout=60_000)
        open_tab(page, "Chat")
        button(page, "Send").click()
        waiting = visible(page, page.get_by_text(re.compile(r"waiting for training job \d+")))
        waiting.wait_for(timeout=60_000)
        expect(visible(page, page.get_by_text(re.compile(r"Vote #\d+ saved")))).to_have_count(0)
        visible(page, page.get_by_text(re.compile(r"Teacher · .* answer read:"))).wait_for()
        expect(field(page, "Student's rationale")).to_have_value("")
        shot(page, "22-chat-student-waits-for-training")
        open_tab(page, "Train")
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*cancelled")).wait_for(timeout=60_000)
        open_tab(page, "Chat")
        expect(waiting).to_have_count(0, timeout=120_000)
        gold.wait_for(timeout=120_000)
        expect(field(page, "Student's rationale")).not_to_have_value("")

        # Hostile text from a model: shown verbatim in the panes, nothing runs.
        question.fill(HOSTILE)
        button(page, "Send").click()
        teacher = field(page, "Teacher's rationale")
        expect(teacher).to_have_value(re.compile(re.escape("<script>alert(1)</script>")))
        expect(teacher).to_have_value(re.compile(re.escape("<img/src=x/onerror=alert(1)>")))
        visible(page, page.get_by_text("Not one of this experiment's questions")).wait_for()
        visible(page, page.get_by_text("answer read: >>")).wait_for(timeout=120_000)
        expect(visible(page, page.get_by_text(re.compile(r"Vote #\d+ saved")))).to_have_count(0)
        assert page.locator("img[src='x']").count() == 0
        page.wait_for_timeout(500)
        assert dialogs == []
        shot(page, "23-chat-model-text-as-text")
    finally:
        context.close()
