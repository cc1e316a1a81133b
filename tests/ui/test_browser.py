"""The app in a real browser (Playwright + Debian's Chromium) against `python app.py`.

What a person sees: owners kept across reloads and kept apart between browsers, the whole
offline loop, and model text shown as text.
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
    new_page,
    open_tab,
    owner_id,
    page_owner,
    shot,
    visible_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One app for this module's tests (each test uses its own browser contexts = owners)."""
    workspace = tmp_path_factory.mktemp("browser") / "workspace"
    workspace.mkdir()
    with app_server(workspace) as url:
        yield url, workspace


def test_reload_keeps_the_owner_and_two_browsers_are_two_owners(server, browser):
    url, _ = server
    ctx_a, a = new_page(browser, url)
    ctx_b, b = new_page(browser, url)
    try:
        owner_a, owner_b = owner_id(a), owner_id(b)
        # The page shows a fingerprint of the owner id, never the id (a credential) itself.
        assert re.fullmatch(r"#[0-9a-f]{8}", owner_a) and re.fullmatch(r"#[0-9a-f]{8}", owner_b)
        assert owner_a != owner_b and "anon-" not in a.content()
        create_experiment(a, "alpha-letters", "last_letter_concatenation")
        expect(a.get_by_text("28 train / 12 test questions", exact=False)).to_be_visible()
        shot(a, "00-experiment-created")

        a.reload()
        a.get_by_text("owner id").wait_for()
        assert owner_id(a) == owner_a
        a.get_by_text("28 train / 12 test questions", exact=False).wait_for()
        expect(a.get_by_label("Experiment", exact=True)).to_have_value("alpha-letters")

        # B sees none of A's experiments.
        b.get_by_label("Experiment", exact=True).click()
        assert b.get_by_role("option", name="alpha-letters").count() == 0
        assert "alpha-letters" not in b.content()
    finally:
        ctx_a.close()
        ctx_b.close()


XSS = "<script>alert(1)</script> and <img src=x onerror=alert(1)>"


def review_counts(page) -> str:
    return page.get_by_text(re.compile(r"Reviewed \d+")).inner_text()


def wait_counts(page, pattern: str) -> None:
    page.get_by_text(re.compile(pattern)).wait_for(timeout=20_000)


def test_model_text_is_shown_as_text_and_runs_nothing(server, browser):
    url, workspace = server
    context, page = new_page(browser, url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        create_experiment(page, "xss", "last_letter_concatenation", size=10)
        generate_with_builtin_teacher(page)
        # What a teacher wrote, verbatim: make every rationale hostile, so that the row each
        # table shows first has it (the tables scroll, and Gradio renders only the rows in view).
        owner = page_owner(page, workspace)
        with Store(workspace) as store:
            exp = store.get_experiment("xss", owner)
            with store.transaction() as conn:
                conn.execute(
                    "UPDATE samples SET rationale = ? WHERE experiment_id = ?", (XSS, exp.id)
                )
        review = open_tab(page, "Review")
        review.get_by_role("button", name="Refresh").click()
        teacher_box = page.get_by_label("Teacher's rationale (original)")
        expect(teacher_box).to_have_value(re.compile(re.escape(XSS)))
        # The D rationales of the question, in a table: the literal text in a cell.
        visible_text(review, "<script>alert(1)</script>").wait_for()
        assert page.locator("img[src='x']").count() == 0
        # The Teacher tab's table of newest samples shows it as text too.
        teacher = open_tab(page, "Teacher")
        teacher.get_by_role("button", name="Refresh").click()
        visible_text(teacher, "<img src=x onerror=alert(1)>").wait_for()
        assert page.locator("img[src='x']").count() == 0
        page.wait_for_timeout(500)
        assert dialogs == []
        shot(page, "90-model-text-as-text")
    finally:
        context.close()


def test_a_new_user_runs_the_whole_offline_loop(server, browser):
    """Task → Teacher → Review (buttons and keys) → Train → Evaluate, as a person would."""
    url, _ = server
    context, page = new_page(browser, url)
    try:
        create_experiment(page, "loop", "last_letter_concatenation")
        shot(page, "01-task")

        generate_with_builtin_teacher(page)
        visible_text(page, "teacher accuracy so far").wait_for()
        shot(page, "02-teacher")

        open_tab(page, "Review")
        wait_counts(page, r"28 rationales")
        wait_counts(page, r"Reviewed 0 ")
        page.get_by_role("button", name="Accept", exact=True).click()
        wait_counts(page, r"Reviewed 1 \(1 accepted, 0 rejected\)")
        page.keyboard.press("r")
        wait_counts(page, r"Reviewed 2 \(1 accepted, 1 rejected\)")
        page.keyboard.press("a")
        wait_counts(page, r"Reviewed 3 \(2 accepted, 1 rejected\)")
        page.keyboard.press("k")  # back to the one just accepted
        page.get_by_text(re.compile(r"Rationale 3 of 28")).wait_for()
        shot(page, "03-review")

        fill_all(open_tab(page, "Train"), {"Max steps": "6"})
        page.get_by_role("button", name="Start training").click()
        # "both": Fine-tune-CoT then the vanilla baseline, queued one after the other.
        page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*done")).wait_for(timeout=240_000)
        shot(page, "04-train")

        evaluate = open_tab(page, "Evaluate")
        # A student trained for 6 steps never writes its end token: cap its answers.
        fill_all(evaluate, {"Max total length": "96"})
        page.get_by_role("button", name="Evaluate", exact=True).click()
        page.get_by_text(re.compile(r"job \d+ \(evaluate\) \S*\s*done")).wait_for(timeout=240_000)
        page.get_by_role("button", name="Evaluate the teacher").click()
        table = page.get_by_label("Comparison on the test split")
        expect(table).to_contain_text("Fine-tune-CoT", timeout=120_000)
        expect(table).to_contain_text("vanilla", ignore_case=True)
        expect(table).not_to_contain_text("not measured", timeout=120_000)
        shot(page, "05-evaluate")
    finally:
        context.close()


def test_a_reload_reattaches_to_the_running_job_which_can_be_cancelled(server, browser):
    url, _ = server
    context, page = new_page(browser, url)
    try:
        create_experiment(page, "reattach", "last_letter_concatenation", size=20)
        generate_with_builtin_teacher(page)
        open_tab(page, "Train")
        page.get_by_label("Fine-tune-CoT", exact=True).check()
        fill_all(page, {"Max steps": "3000"})
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*running")).wait_for(timeout=60_000)

        page.reload()
        page.get_by_text("owner id").wait_for()
        open_tab(page, "Train")
        running = page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*running"))
        running.wait_for(timeout=30_000)
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*cancelled")).wait_for(timeout=60_000)
        shot(page, "06-train-cancelled-after-reload")
    finally:
        context.close()
