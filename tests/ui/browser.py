"""Playwright helpers for the browser tests: start `python app.py`, drive Debian's Chromium.

Screenshots go to `test-artifacts/browser/` (kept by CI as the tests' artifacts; git ignores it).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.helpers import kill_job_processes

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"

# Playwright's `expect` gives up after 5 s by default; a CI machine running the suite on two
# busy cores answers some clicks more slowly than that.
expect.set_options(timeout=30_000)


#: Tries to start the app when it exits because it found no free port.
PORT_ATTEMPTS = 5
PORT_TAKEN = ("Cannot find empty port", "Address already in use", "address already in use")
#: What Gradio prints once its server runs, with the port it actually bound.
RUNNING = re.compile(r"Running on local URL:\s+(http://127\.0\.0\.1:\d+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (another process may take it before
    it is used; `app_server` copes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_started(proc: subprocess.Popen, log_path: Path) -> str | None:
    """This app's URL once it says where it runs and the URL answers; None if it exited because
    it found no free port; RuntimeError for any other failure to start."""
    deadline = time.monotonic() + 120
    while True:
        log = log_path.read_text(errors="replace")
        if proc.poll() is not None:
            if any(reason in log for reason in PORT_TAKEN):
                return None
            raise RuntimeError(f"app.py did not start: {log}")
        if match := RUNNING.search(log):  # the port this app bound, not the one asked for
            url = match.group(1) + "/"
            try:
                urllib.request.urlopen(url, timeout=2)
                return url
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"app.py did not start: {log}")
        time.sleep(0.3)


@contextmanager
def app_server(workspace: Path, **env: str) -> Iterator[str]:
    """`python app.py` on a free port with its data in `workspace`; yields its URL.

    The port asked for may be taken by another process before the app binds it: Gradio then
    binds the next free one (it tries a range), so the URL is read from what the app says it
    runs on. If it finds none and exits, it is started again on another port."""
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        full_env = {
            **os.environ,
            "RTDEMO_HOME": str(workspace),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port),
            "RTDEMO_JOB_HEARTBEAT_S": "0.5",
            "PYTHONUNBUFFERED": "1",  # "Running on local URL" reaches the log at once
            **env,
        }
        log_path = workspace.parent / f"app-{port}-{attempt}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed by _stop
        proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO, env=full_env, stdout=log, stderr=log
        )
        try:
            url = _wait_started(proc, log_path)
        except BaseException:
            _stop(proc, log, workspace)
            raise
        if url is not None:
            break
        _stop(proc, log, workspace)  # no free port found: try again
    else:
        raise RuntimeError(f"app.py found no free port {PORT_ATTEMPTS} times")
    try:
        yield url
    finally:
        _stop(proc, log, workspace)


def _stop(proc: subprocess.Popen, log, workspace: Path) -> None:
    kill_job_processes(workspace)  # they outlive the app by design
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def chromium_path() -> str:
    """Debian's Chromium (skipped outside CI when absent; CI turns the skip into a failure)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Debian's chromium is not installed (scripts/dev test installs it)")
    return path


def shot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact; return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def owner_id(page) -> str:
    """The owner the page shows: the fingerprint of its id ("owner id `#1a2b3c4d`")."""
    text = page.get_by_text("owner id").inner_text()
    return text.rsplit(" ", 1)[-1].strip("`")


def page_owner(page, workspace: Path) -> str:
    """The owner id of the page (which shows only its fingerprint), found among the owners of
    experiments in the app's store."""
    from rtdemo.ui.session import owner_fingerprint
    from rtdemo.workspace.store import Store

    shown = owner_id(page).removeprefix("#")
    with Store(workspace) as store:
        owners = [row[0] for row in store.read("SELECT DISTINCT owner FROM experiments")]
    [owner] = [o for o in owners if owner_fingerprint(o) == shown]
    return owner


def pick(page, label: str, option: str) -> None:
    """Choose `option` in the Gradio dropdown labelled `label`."""
    box = page.get_by_label(label, exact=True)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


def open_tab(page, name: str):
    """Click the app's tab called `name`; return its panel once it is shown.

    Scope locators to the panel: until the click has re-rendered the page, the tab left
    behind is still visible, and a button such as "Refresh" exists in several tabs.
    """
    page.get_by_role("tab", name=name, exact=True).click()
    panel = page.locator(f"#tab-{name.lower()}")
    expect(page.get_by_role("tab", name=name, exact=True)).to_have_attribute(
        "aria-selected", "true"
    )
    expect(panel).to_be_visible()
    return panel


def new_page(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_text("owner id").wait_for()
    return context, page


def fill_all(scope, values: dict[str, str], attempts: int = 10) -> None:
    """Fill the fields labelled by the keys of `values` in `scope` (a page, or a tab's panel from
    `open_tab`), and make sure they keep their values.

    CI once created an experiment of 500 questions although "Size" had been filled with 40: the
    field, just revealed by opening its section, showed its default again while the next field
    kept its value (a re-render of freshly shown contents on a cold, busy machine; not
    reproduced since). So: fill, let the page settle, check, and fill again what was lost.
    """
    page = getattr(scope, "page", scope)  # a Locator knows its page
    fields = {label: scope.get_by_label(label) for label in values}
    for _ in range(attempts):
        for label, field in fields.items():
            if field.input_value() != values[label]:
                field.fill(values[label])
        page.wait_for_timeout(500)
        if all(field.input_value() == values[label] for label, field in fields.items()):
            return
    for label, field in fields.items():
        expect(field).to_have_value(values[label])


def create_experiment(page, name: str, task: str, size: int = 40, length: int = 2) -> None:
    """Choose a synthetic task in the Task tab and create experiment `name` from it."""
    open_tab(page, "Task")
    pick(page, "Task", task)
    pick(page, "Source", "synthetic")
    page.get_by_text("Synthetic task settings and your own file").click()
    fill_all(
        page,
        {
            "Size (questions)": str(size),
            "People / words per question": str(length),
            "New experiment name": name,
        },
    )
    page.get_by_role("button", name="Create from the Task tab's choice").click()
    page.get_by_text(f"{name}", exact=False).first.wait_for()
    page.get_by_text("train /", exact=False).wait_for()


def generate_with_builtin_teacher(page) -> None:
    """Teacher tab: the built-in teacher on the experiment's train split, until it is done."""
    open_tab(page, "Teacher")
    page.get_by_role("button", name="Estimate cost").click()
    page.get_by_text("free", exact=False).first.wait_for()
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_text(re.compile(r"job \d+ \(generate\) done")).wait_for(timeout=120_000)


def visible_text(page, text: str):
    """The first visible element whose text contains `text` (hidden tabs hold copies)."""
    return page.get_by_text(text, exact=False).filter(visible=True).first
