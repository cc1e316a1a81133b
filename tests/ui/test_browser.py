"""The app in a real browser (Playwright + Debian's Chromium) against `python app.py`.

What a person sees: owners kept across reloads and kept apart between browsers, the whole
offline loop, and model text shown as text.
"""

from __future__ import annotations

import pytest

from tests.ui.browser import app_server, chromium_path, open_tab, owner_id, pick, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One app for this module's tests (each test uses its own browser contexts = owners)."""
    workspace = tmp_path_factory.mktemp("browser") / "workspace"
    workspace.mkdir()
    with app_server(workspace) as url:
        yield url, workspace


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True)
        yield b
        b.close()


def new_page(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_text("owner id").wait_for()
    return context, page


def create_experiment(page, name: str, task: str, size: int = 40, length: int = 2) -> None:
    """Choose a synthetic task in the Task tab and create experiment `name` from it."""
    open_tab(page, "Task")
    pick(page, "Task", task)
    pick(page, "Source", "synthetic")
    page.get_by_text("Synthetic task settings and your own file").click()
    page.get_by_label("Size (questions)").fill(str(size))
    page.get_by_label("People / words per question").fill(str(length))
    page.get_by_label("New experiment name").fill(name)
    page.get_by_role("button", name="Create from the Task tab's choice").click()
    page.get_by_text(f"{name}", exact=False).first.wait_for()
    page.get_by_text("train /", exact=False).wait_for()


def test_reload_keeps_the_owner_and_two_browsers_are_two_owners(server, browser):
    url, _ = server
    ctx_a, a = new_page(browser, url)
    ctx_b, b = new_page(browser, url)
    try:
        owner_a, owner_b = owner_id(a), owner_id(b)
        assert owner_a.startswith("anon-") and owner_b.startswith("anon-") and owner_a != owner_b
        create_experiment(a, "alpha-letters", "last_letter_concatenation")
        assert a.get_by_text("28 train / 12 test questions", exact=False).is_visible()
        shot(a, "00-experiment-created")

        a.reload()
        a.get_by_text("owner id").wait_for()
        assert owner_id(a) == owner_a
        a.get_by_text("28 train / 12 test questions", exact=False).wait_for()
        assert a.get_by_label("Experiment", exact=True).input_value() == "alpha-letters"

        # B sees none of A's experiments.
        b.get_by_label("Experiment", exact=True).click()
        assert b.get_by_role("option", name="alpha-letters").count() == 0
        assert "alpha-letters" not in b.content()
    finally:
        ctx_a.close()
        ctx_b.close()
