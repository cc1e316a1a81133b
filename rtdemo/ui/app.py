"""Build the app: `demo = build_app()`; `demo.launch(**launch_kwargs())`.

Layout: a header, the owner line (and, on Spaces, the Hugging Face login button), the experiment
picker, then one tab per step of the method. Every handler takes the owner and the selected
experiment as its first inputs; the owner comes from the login on Spaces, else from a signed id
kept in the browser (`rtdemo.ui.session`); the page shows only a fingerprint of it.

The login button (and Gradio's OAuth routes) exist only on a real Space: `SYSTEM=spaces` *and*
`SPACE_ID` (both set by Spaces). With `SYSTEM=spaces` alone (the Spaces quotas on another
machine), Gradio would mock the login with this machine's own Hugging Face account, asking the
Hub who that is when the app starts: that fails offline, and would log every visitor in as the
host. There the app runs without a login: every owner is a visitor.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import warnings
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_space

from rtdemo.errors import UserError
from rtdemo.hosting.quotas import on_spaces
from rtdemo.ui.chat_tab import build_chat_tab
from rtdemo.ui.evaluate_tab import build_evaluate_tab
from rtdemo.ui.experiments import create_experiment, describe_experiment, experiment_names
from rtdemo.ui.publish_tab import build_publish_tab
from rtdemo.ui.review_tab import build_review_tab
from rtdemo.ui.session import (
    AppContext,
    owner_fingerprint,
    owner_key,
    resolve_owner,
    sign_owner,
)
from rtdemo.ui.task_tab import build_task_tab
from rtdemo.ui.teacher_tab import build_teacher_tab
from rtdemo.ui.theme import delete_cache
from rtdemo.ui.train_tab import build_train_tab

TITLE = "Reasoning Teacher Studio"
#: Was the key of the owner id kept in the browser; Gradio serves that key to every client (it
#: encrypts in the browser), so it is no longer used: owner ids are signed (`owner_key`).
OLD_SECRET_ENV = "RTDEMO_BROWSER_SECRET"


def browser_state_secret(key: str) -> str:
    """What `gr.BrowserState` encrypts the kept id with. Gradio sends it to every client (it is
    in `/config`), so it is *not* a secret: derived from the owner key (stable across restarts)
    without revealing it. The id's signature is what a client cannot forge."""
    return hmac.new(key.encode(), b"rtdemo-browser-state", hashlib.sha256).hexdigest()[:32]


def login_enabled() -> bool:
    """Whether the Hugging Face login is offered: on a real Space only (module docstring)."""
    return on_spaces() and get_space() is not None


def _owner_line(owner: str) -> str:
    who = owner.removeprefix("hf:") if owner.startswith("hf:") else "a visitor (this browser)"
    return (
        f"<span class='rt-note'>Working as **{who}** · owner id "
        f"`#{owner_fingerprint(owner)}`</span>"
    )


def start_session(
    ctx: AppContext, stored: str | None, remembered: str | None, username: str | None
) -> tuple:
    """A page (or API client) arrives: its owner, and the experiment it had selected.

    Returns the id to keep in the browser, the owner, the owner line, the picker and the
    experiment line. A logged-in user's browser keeps what it had (the login is the owner).
    """
    key = owner_key(ctx.workspace)
    who = resolve_owner(stored, username, key=key)
    names = experiment_names(ctx, who)
    pick = remembered if remembered in names else (names[0] if names else None)
    kept = stored if who.startswith("hf:") else sign_owner(who, key)
    return (
        kept,
        who,
        _owner_line(who),
        gr.Dropdown(choices=names, value=pick),
        describe_experiment(ctx, who, pick),
    )


def build_app(workspace: str | Path | None = None) -> gr.Blocks:
    """The Gradio Blocks of the whole app (no network, no model loading while building)."""
    ctx = AppContext.from_env(workspace)
    login = login_enabled()
    if on_spaces() and not login:
        warnings.warn(
            "SYSTEM=spaces without SPACE_ID: not a real Space, so no Hugging Face login "
            "(every owner is a visitor)",
            stacklevel=2,
        )
    if os.environ.get(OLD_SECRET_ENV):
        warnings.warn(
            f"{OLD_SECRET_ENV} is no longer used (Gradio sent it to every browser): owner ids "
            "are now signed with $RTDEMO_OWNER_KEY (else a key in the data folder)",
            stacklevel=2,
        )
    key = owner_key(ctx.workspace)
    with gr.Blocks(title=TITLE, delete_cache=delete_cache()) as demo:
        gr.Markdown(
            f"# {TITLE}\nTeach a small model to reason from a large one "
            "([Fine-tune-CoT](https://arxiv.org/abs/2212.10071)): pick a task, let a teacher "
            "write rationales, review them, train a student, and compare it with the baseline."
        )
        kept_owner = gr.BrowserState(
            None, storage_key="rtdemo-owner", secret=browser_state_secret(key)
        )
        kept_experiment = gr.BrowserState(None, storage_key="rtdemo-experiment")
        owner = gr.State(None)
        with gr.Row():
            owner_md = gr.Markdown()
            if login:
                gr.LoginButton()
        with gr.Row(equal_height=True):
            experiment = gr.Dropdown(
                [], value=None, label="Experiment", allow_custom_value=False, scale=3
            )
            new_name = gr.Textbox(
                label="New experiment name", placeholder="e.g. letters-1", scale=2
            )
            create = gr.Button("Create from the Task tab's choice", scale=1)
        experiment_md = gr.Markdown()

        with gr.Tab("Task", elem_id="tab-task"):
            task_choice = build_task_tab()
        with gr.Tab("Teacher", elem_id="tab-teacher"):
            build_teacher_tab(ctx, owner, experiment)
        with gr.Tab("Review", elem_id="tab-review"):
            build_review_tab(ctx, owner, experiment)
        with gr.Tab("Train", elem_id="tab-train"):
            build_train_tab(ctx, owner, experiment)
        with gr.Tab("Evaluate", elem_id="tab-evaluate"):
            build_evaluate_tab(ctx, owner, experiment)
        with gr.Tab("Chat", elem_id="tab-chat"):
            build_chat_tab(ctx, owner, experiment)
        with gr.Tab("Publish", elem_id="tab-publish"):
            build_publish_tab(ctx, owner, experiment)

        def load(stored: str | None, remembered: str | None, profile: gr.OAuthProfile | None):
            return start_session(ctx, stored, remembered, profile.username if profile else None)

        demo.load(
            load,
            [kept_owner, kept_experiment],
            [kept_owner, owner, owner_md, experiment, experiment_md],
            api_name="session",  # API clients call this first: it gives their session an owner
        )

        def select(who: str | None, name: str | None):
            try:
                return name, describe_experiment(ctx, who, name)
            except UserError as err:
                return None, f"⚠️ {err}"

        experiment.change(
            select, [owner, experiment], [kept_experiment, experiment_md], api_visibility="private"
        )

        def create_clicked(who: str | None, name: str, **values: Any):
            try:
                message = create_experiment(ctx, who, name, task_choice.build(values))
            except UserError as err:
                return gr.Dropdown(), gr.Textbox(), f"⚠️ {err}"
            names = experiment_names(ctx, who)
            return gr.Dropdown(choices=names, value=name.strip()), "", message

        create.click(
            create_clicked,
            [owner, new_name],
            [experiment, new_name, experiment_md],
            inputs_kwargs=task_choice.kwargs,
            api_name="create_experiment",
        )
    return demo
