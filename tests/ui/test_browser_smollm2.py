"""The whole loop in a real browser with a real pretrained student: SmolLM2-135M-Instruct.

A person creates a small Coin Flip experiment, lets the built-in teacher write rationales, trains
`smollm2-135m` with LoRA for two steps (a short sequence cap), evaluates it on the test questions,
then chats with it, SmolLM2 answering as the local teacher too. The tiny student's loop is
tests/ui/test_browser.py; this one is kept short (a few steps, a few questions, short answers).
`smollm2-135m` is prepared by scripts/dev (the `smollm2_folder` fixture fails when it is not).

    .venv/bin/python -m pytest tests/ui/test_browser_smollm2.py
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.ui.browser import (
    app_server,
    create_experiment,
    fill_all,
    generate_with_builtin_teacher,
    new_page,
    open_tab,
    pick,
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("browser-smollm2") / "workspace"
    workspace.mkdir()
    with app_server(workspace) as url:
        yield url


def visible(locator):
    """The first visible match (hidden tabs hold components with the same labels)."""
    return locator.filter(visible=True).first


def test_a_user_trains_evaluates_and_chats_with_smollm2(server, browser, smollm2_folder):
    context, page = new_page(browser, server)
    try:
        create_experiment(page, "smol", "coin_flip", size=10)
        generate_with_builtin_teacher(page)

        train = open_tab(page, "Train")
        pick(page, "Student", "smollm2-135m")
        visible(page.get_by_text("smollm2-135m is prepared on this server")).wait_for()
        expect(train).to_contain_text("dequantized 4-bit (Q4_1) copy")
        # The recipe made for a small pretrained student comes with it: LoRA, a few epochs.
        expect(train.get_by_label("small", exact=True)).to_be_checked()
        expect(train.get_by_label("lora", exact=True)).to_be_checked()
        expect(train.get_by_label("Max steps")).to_have_value("0")
        train.get_by_label("Fine-tune-CoT", exact=True).check()
        # Two LoRA steps of four short sequences: enough to see the real model through the loop.
        fill_all(train, {"Max steps": "2", "Batch size": "4", "Max length (tokens)": "96"})
        command = visible(page.get_by_text("rtdemo train --experiment smol"))
        expect(command).to_contain_text("--student smollm2-135m")
        expect(command).to_contain_text("--recipe small --method lora")
        expect(command).to_contain_text("--max-length 96")
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"job \d+ \(train\) \S*\s*done")).wait_for(timeout=240_000)
        expect(train).to_contain_text("student smollm2-135m")
        shot(page, "30-smollm2-trained")

        evaluate = open_tab(page, "Evaluate")
        # Two steps teach no end token: cap the answers (prompt and answer together).
        fill_all(evaluate, {"Max total length": "80"})
        page.get_by_role("button", name="Evaluate", exact=True).click()
        page.get_by_text(re.compile(r"job \d+ \(evaluate\) \S*\s*done")).wait_for(timeout=240_000)
        table = page.get_by_label("Comparison on the test split")
        expect(table).to_contain_text("Fine-tune-CoT", timeout=120_000)
        shot(page, "31-smollm2-evaluated")

        chat = open_tab(page, "Chat")
        visible(page.get_by_role("button", name="↻ Students", exact=True)).click()
        expect(visible(page.get_by_label("Student", exact=True))).to_have_value("cot")
        chat.get_by_label("Local model", exact=True).check()
        # The model box fills itself with the prepared SmolLM2, and says so.
        model = visible(page.get_by_role("textbox", name=re.compile(r"^Teacher model")))
        expect(model).to_have_value("smollm2-135m")
        expect(chat).to_contain_text("smollm2-135m is prepared on this server")
        visible(page.get_by_text("OpenAI-compatible teacher, and generation")).click()
        fill_all(chat, {"Teacher max tokens (per call)": "24", "Student max new tokens": "24"})
        visible(page.get_by_role("button", name="🎲 Random test question")).click()
        question = visible(page.get_by_label("Question", exact=True))
        expect(question).to_have_value(re.compile(r"A coin is heads up"))
        visible(page.get_by_role("button", name="Send", exact=True)).click()

        checked = re.compile(r"Gold answer \(test question #\d+\): .+ · teacher (✅|❌) · student")
        visible(page.get_by_text(checked)).wait_for(timeout=120_000)
        teacher = re.compile(r"Teacher · smollm2-135m \(local model\) · ")
        expect(visible(page.get_by_text(teacher))).not_to_contain_text("⚠️")
        student = visible(page.get_by_text(re.compile(r"Student · run cot \(Fine-tune-CoT, smol")))
        expect(student).to_contain_text("smollm2-135m")
        expect(student).not_to_contain_text("⚠️")
        expect(visible(page.get_by_label("Teacher's rationale", exact=True))).not_to_have_value("")
        shot(page, "32-smollm2-chat")
    finally:
        context.close()
