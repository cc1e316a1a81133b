"""The Publish tab: put a trained student and its rationale dataset on the Hugging Face Hub, with
cards that say how it was taught and what it scored; preview the files first (dry run).

Handlers live in `publish_actions.py` (plain functions over the core); this file lays out and
wires. On Spaces the push uses the signed-in user's own token (`gr.OAuthToken`, scope
contribute-repos) and repo ids without an owner get the user's name; elsewhere a typed token or
the machine's `HF_TOKEN`. Cards and file lists are shown as plain text.
"""

from __future__ import annotations

from functools import partial

import gradio as gr

from rtdemo.errors import UserError
from rtdemo.hosting.quotas import on_spaces
from rtdemo.ui.publish_actions import (
    LICENSES,
    VISIBILITY,
    WHAT,
    PublishForm,
    cancel_publish,
    hub_token,
    publish_command,
    publish_status,
    start_publish,
    trained_runs,
)
from rtdemo.ui.session import AppContext, shown_errors


def start_from_tab(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    values: tuple,
    typed: str | None,
    dry_run: bool,
    oauth: gr.OAuthToken | None,
    profile: gr.OAuthProfile | None,
    spaces: bool,
) -> tuple[str, str]:
    """Start a push (or a preview) from the form's `values`: a message and the command line.

    The token: typed, else the signed-in user's OAuth token, else (not on Spaces) the machine's;
    a repo id without an owner goes to the signed-in user's account."""
    form = PublishForm.of(*values).with_owner(profile.username if profile else None)
    try:
        token = None if dry_run else hub_token(typed, oauth.token if oauth else None, spaces)
        return start_publish(ctx, owner, experiment, form, token, dry_run)
    except UserError as err:
        return f"⚠️ {err}", publish_command(experiment, form)


def build_publish_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Publish tab inside the current Blocks context."""
    spaces = on_spaces()
    gr.Markdown(
        "Publish the **student** (a model repo) and the **rationales** it learnt from (a dataset "
        "repo) on the Hugging Face Hub. Each gets a card: how it was taught, its settings, and "
        "its test results beside the vanilla baseline and the teacher. **Preview** writes the "
        "exact files without uploading anything. Repos are private unless you choose public."
    )
    with gr.Row():
        run = gr.Dropdown(
            [],
            allow_custom_value=True,
            label="Student run",
            info="empty: the newest trained Fine-tune-CoT run",
        )
        what = gr.Radio(list(WHAT), value="student and dataset", label="Publish")
        visibility = gr.Radio(list(VISIBILITY), value="private", label="Visibility")
    with gr.Row():
        repo_id = gr.Textbox(
            label="Repo id",
            placeholder="your-name/letters-student",
            info="OWNER/NAME" + (" (NAME alone: your account)" if spaces else ""),
        )
        dataset_repo_id = gr.Textbox(
            label="Dataset repo id", placeholder="empty: <repo id>-rationales"
        )
        license = gr.Dropdown(
            list(LICENSES), value="unknown", allow_custom_value=True, label="Licence"
        )
    with gr.Row():
        merged = gr.Checkbox(False, label="Full weights (merge a LoRA adapter)")
        all_samples = gr.Checkbox(False, label="Dataset: every sample with its verdicts too")
        typed = gr.Textbox(
            label="Hugging Face token",
            type="password",
            info="write access; empty: "
            + ("your sign-in" if spaces else "HF_TOKEN where the app runs"),
        )
    form = [run, what, repo_id, dataset_repo_id, visibility, merged, all_samples, license]
    with gr.Row():
        preview = gr.Button("Preview (dry run)")
        publish = gr.Button("Publish", variant="primary")
        cancel = gr.Button("Cancel publishing", variant="stop")
        refresh = gr.Button("Refresh")
    message = gr.Markdown()
    command = gr.Code(
        publish_command(None, PublishForm()), language="shell", label="Equivalent CLI command"
    )
    status = gr.Markdown("Nothing published yet.")
    progress = gr.Slider(0, 100, value=0, label="Publishing progress (%)", interactive=False)
    log = gr.Textbox(label="Publishing log", lines=6, max_lines=14, interactive=False)
    files = gr.Textbox(label="Files", lines=6, max_lines=20, interactive=False)
    cards = gr.Code(
        label="Cards (README.md)", language="markdown", lines=12, max_lines=40, wrap_lines=True
    )
    timer = gr.Timer(2.0, active=False)
    view = [status, progress, log, files, cards]
    who_what = [owner, experiment]
    private = dict(api_visibility="private", concurrency_limit=None)

    def tick(who: str | None, name: str | None) -> tuple:
        try:
            v = publish_status(ctx, who, name)
        except UserError as err:
            return f"⚠️ {err}", 0.0, "", "", "", gr.Timer(active=False)
        return v.status, v.percent, v.log, v.files, v.card, gr.Timer(active=v.active)

    def status_of(who: str | None, name: str | None) -> tuple:
        return tick(who, name)[:5]

    def publish_clicked(
        who: str | None,
        name: str | None,
        run: str,
        what: str,
        repo_id: str,
        dataset_repo_id: str,
        visibility: str,
        merged: bool,
        all_samples: bool,
        license: str,
        typed: str,
        oauth: gr.OAuthToken | None,
        profile: gr.OAuthProfile | None,
    ) -> tuple[str, str]:
        values = (run, what, repo_id, dataset_repo_id, visibility, merged, all_samples, license)
        return start_from_tab(ctx, who, name, values, typed, False, oauth, profile, spaces)

    def preview_clicked(
        who: str | None,
        name: str | None,
        run: str,
        what: str,
        repo_id: str,
        dataset_repo_id: str,
        visibility: str,
        merged: bool,
        all_samples: bool,
        license: str,
        profile: gr.OAuthProfile | None,
    ) -> tuple[str, str]:
        values = (run, what, repo_id, dataset_repo_id, visibility, merged, all_samples, license)
        return start_from_tab(ctx, who, name, values, "", True, None, profile, spaces)

    def runs_of(who: str | None, name: str | None):
        try:
            return gr.Dropdown(choices=trained_runs(ctx, who, name))
        except UserError:
            return gr.Dropdown(choices=[])

    poll = dict(fn=tick, inputs=who_what, outputs=[*view, timer])
    publish.click(
        publish_clicked, [*who_what, *form, typed], [message, command], api_name="start_publish"
    ).then(**poll, **private)
    preview.click(
        preview_clicked, [*who_what, *form], [message, command], api_name="preview_publish"
    ).then(**poll, **private)
    cancel.click(
        shown_errors(partial(cancel_publish, ctx)), who_what, message, api_name="cancel_publish"
    ).then(**poll, **private)
    refresh.click(status_of, who_what, view, api_name="publish_status", concurrency_limit=None)
    timer.tick(**poll, **private)
    experiment.change(**poll, **private).then(runs_of, who_what, run, **private)
    run.focus(runs_of, who_what, run, **private)  # runs trained in the meantime
    gr.on(
        [c.change for c in (experiment, *form)],
        lambda name, *values: publish_command(name, PublishForm.of(*values)),
        [experiment, *form],
        command,
        trigger_mode="always_last",
        **private,
    )
