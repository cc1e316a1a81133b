"""Fixtures for the app's tests: a context on a fresh workspace, an owner, an experiment, and
the app launched on a free port with a `gradio_client` session that has an owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdemo.ui.experiments import TaskChoice, create_experiment
from rtdemo.ui.session import AppContext, new_owner


@pytest.fixture
def ui_ctx(tmp_path: Path) -> AppContext:
    """The app's context on this test's workspace."""
    return AppContext.from_env(tmp_path / "workspace")


@pytest.fixture
def owner() -> str:
    """A fresh anonymous owner."""
    return new_owner()


@pytest.fixture
def letters_experiment(ui_ctx: AppContext, owner: str) -> str:
    """An experiment `letters` of `owner`: synthetic last letter concatenation, 40 questions
    (28 train, 12 test), two words each."""
    choice = TaskChoice("last_letter_concatenation", "synthetic", seed=0, size=40, length=2)
    create_experiment(ui_ctx, owner, "letters", choice)
    return "letters"


@pytest.fixture
def launched_app(tmp_path: Path):
    """`build_app()` on this test's workspace, launched on a free port; yields (demo, url)."""
    from rtdemo.ui.app import build_app
    from rtdemo.ui.theme import launch_kwargs

    demo = build_app(tmp_path / "workspace")
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", **launch_kwargs())
    try:
        yield demo, demo.local_url
    finally:
        demo.close()


@pytest.fixture
def client(launched_app):
    """A `gradio_client.Client` whose session has called `/session` (so it has an owner).

    `client.kept` is what a browser would keep (the signed id: pass it to `/session` to come
    back as the same owner); `client.owner` is the owner id itself (for the store)."""
    from gradio_client import Client

    _, url = launched_app
    c = Client(url, verbose=False)
    c.kept = c.predict(None, None, api_name="/session")[0]
    c.owner = c.kept.partition(".")[0]
    return c


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, for one test module (one context per test).

    Module scope, not session: Playwright's sync API keeps an event loop running on this thread
    while it is open, and later tests that call `asyncio.run` would fail."""
    from playwright.sync_api import sync_playwright

    from tests.ui.browser import chromium_path

    executable = chromium_path()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True)
        yield b
        b.close()
