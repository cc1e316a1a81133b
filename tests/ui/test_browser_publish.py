"""Publishing from the app in a real browser (Playwright + Debian's Chromium) to the fake Hub.

A person creates an experiment, lets the built-in teacher write rationales, trains the tiny
student for a few steps (Fine-tune-CoT), then publishes student and dataset from the Publish tab.
The app gets the Hub's address and a token from its environment (`HF_ENDPOINT`, `HF_TOKEN`), as a
local install would; what arrives is loaded back and compared with what the app trained.

    .venv/bin/python -m pytest tests/ui/test_browser_publish.py
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from rtdemo.workspace.store import Store
from tests.fakes.hub_server import TOKEN, FakeHubServer
from tests.ui.browser import (
    app_server,
    create_experiment,
    fill_all,
    open_tab,
    page_owner,
    pick,
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with FakeHubServer(tmp_path_factory.mktemp("hub") / "hub") as server:
        yield server
    assert server.handler_errors == []


@pytest.fixture(scope="module")
def server(tmp_path_factory, hub):
    """The app, publishing to the fake Hub with the machine's token (a local install)."""
    workspace = tmp_path_factory.mktemp("browser-publish") / "workspace"
    workspace.mkdir()
    env = {"HF_TOKEN": TOKEN, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}
    with app_server(workspace, **env) as url:
        yield url, workspace


def visible(page, role: str, name: str):
    """The visible element of `role` called `name` (hidden tabs hold copies)."""
    return page.get_by_role(role, name=name, exact=True).filter(visible=True).first


def test_a_user_trains_a_student_and_publishes_it_with_its_rationales(server, browser, hub):
    url, workspace = server
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    try:
        page.goto(url)
        page.get_by_text("owner id").wait_for()
        # Task: a small synthetic Last Letter experiment.
        create_experiment(page, "letters", "last_letter_concatenation", size=40, length=2)
        # Teacher: the built-in one.
        open_tab(page, "Teacher")
        page.get_by_role("button", name="Start", exact=True).click()
        page.get_by_text(re.compile(r"job \d+ \(generate\) done")).wait_for(timeout=120_000)
        # Train: Fine-tune-CoT for a few steps.
        open_tab(page, "Train")
        page.get_by_label("Fine-tune-CoT", exact=True).check()
        fill_all(page, {"Max steps": "6"})
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*done")).wait_for(timeout=240_000)

        # Publish: a repo id is all it needs here (token and Hub from the app's environment).
        open_tab(page, "Publish")
        page.get_by_placeholder("your-name/letters-student").fill("tester/browser-student")
        pick(page, "Licence", "mit")
        command = page.get_by_text(re.compile(r"rtdemo push .*--repo-id tester/browser-student"))
        command.filter(visible=True).first.wait_for(timeout=10_000)  # the equivalent command
        visible(page, "button", "Publish").click()
        page.get_by_text(re.compile(r"job \d+ \(push\) \S*\s*done")).wait_for(timeout=180_000)
        links = page.get_by_role("link", name="tester/browser-student-rationales")
        expect(links).to_have_attribute(
            "href", f"{hub.url}/datasets/tester/browser-student-rationales"
        )
        files = page.get_by_label("Files", exact=True)
        expect(files).to_have_value(re.compile(r"model\.safetensors"))
        shot(page, "10-publish")
        owner = page_owner(page, workspace)
    finally:
        context.close()

    # What arrived: private repos, the trained student's very weights, the curated rows.
    import datasets
    from safetensors.torch import load_file

    from rtdemo.curation.curate import curate
    from rtdemo.training.runs import get_run

    model = hub.repo("model", "tester/browser-student")
    rationales = hub.repo("dataset", "tester/browser-student-rationales")
    assert model.private and rationales.private
    with Store(workspace) as store:
        exp = store.get_experiment("letters", owner)
        final = get_run(store, exp, "cot").output_dir / "final"
        kept = [c for c in curate(store, exp) if c.kept]
    arrived = load_file(hub.folder("model", "tester/browser-student") / "model.safetensors")
    trained = load_file(final / "model.safetensors")
    assert arrived.keys() == trained.keys()
    assert all(arrived[k].equal(trained[k]) for k in trained)
    folder = hub.folder("dataset", "tester/browser-student-rationales")
    rows = datasets.load_dataset(str(folder), "curated", split="train").to_list()
    assert [(r["question"], r["rationale"]) for r in rows] == [
        (c.question, c.rationale.strip()) for c in kept
    ]
    readme = (hub.folder("model", "tester/browser-student") / "README.md").read_text()
    assert "license: mit" in readme and "not evaluated" in readme  # nothing unmeasured claimed
    assert "- tester/browser-student-rationales" in readme  # the model links its dataset
    with Store(workspace) as store:
        argv = store.read("SELECT argv, env_names FROM jobs WHERE kind = 'push'")
    assert TOKEN not in json.dumps(argv) and json.loads(argv[0][1]) == ["HF_TOKEN"]
