"""The Publish tab: put a trained student and its rationale dataset on the Hugging Face Hub, with
cards that say how it was taught and what it scored; preview the files first (dry run).

Handlers live in `publish_actions.py` (plain functions over the core); this file lays out and
wires. On Spaces the push uses the signed-in user's own token (`gr.OAuthToken`, scope
contribute-repos) and repo ids without an owner get the user's name; elsewhere a typed token or
the machine's `HF_TOKEN`. Cards and file lists are shown as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from rtdemo.errors import UserError
from rtdemo.hosting.fairness import serving
from rtdemo.hosting.quotas import on_spaces
from rtdemo.ui.forms import FormFields
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
    form: PublishForm,
    *,
    token: str | None = "",
    dry_run: bool = False,
    oauth: gr.OAuthToken | None = None,
    profile: gr.OAuthProfile | None = None,
    spaces: bool = False,
) -> tuple[str, str]:
    """Start a push (or a preview) of `form`: a message and the command line.

    The token: typed, else the signed-in user's OAuth token, else (not on Spaces) the machine's;
    a repo id without an owner goes to the signed-in user's account."""
    form = form.with_owner(profile.username if profile else None)
    try:
        hub = None if dry_run else hub_token(token, oauth.token if oauth else None, spaces)
        return start_publish(ctx, owner, experiment, form, hub, dry_run)
    except UserError as err:
        return f"⚠️ {err}", publish_command(experiment, form)


@dataclass
class _Tab:
    """The tab's components: the form, the token box, the buttons and what shows the push."""

    form: FormFields[PublishForm]
    token: gr.Textbox
    buttons: dict[str, gr.Button]  # preview, publish, cancel, refresh
    message: gr.Markdown
    command: gr.Code
    view: list[gr.components.Component]  # status, progress, log, files, cards
    timer: gr.Timer


def build_publish_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Publish tab inside the current Blocks context, and wire it."""
    spaces = on_spaces()
    _wire(ctx, owner, experiment, _layout(spaces), spaces)


def _layout(spaces: bool) -> _Tab:
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
        token = gr.Textbox(
            label="Hugging Face token",
            type="password",
            info="write access; empty: "
            + ("your sign-in" if spaces else "HF_TOKEN where the app runs"),
        )
    form = FormFields(
        PublishForm,
        run=run,
        what=what,
        repo_id=repo_id,
        dataset_repo_id=dataset_repo_id,
        visibility=visibility,
        merged=merged,
        all_samples=all_samples,
        license=license,
    )
    with gr.Row():
        buttons = {
            "preview": gr.Button("Preview (dry run)"),
            "publish": gr.Button("Publish", variant="primary"),
            "cancel": gr.Button("Cancel publishing", variant="stop"),
            "refresh": gr.Button("Refresh"),
        }
    return _Tab(
        form=form,
        token=token,
        buttons=buttons,
        message=gr.Markdown(),
        command=gr.Code(
            publish_command(None, PublishForm()), language="shell", label="Equivalent CLI command"
        ),
        view=[
            gr.Markdown("Nothing published yet."),
            gr.Slider(0, 100, value=0, label="Publishing progress (%)", interactive=False),
            gr.Textbox(label="Publishing log", lines=6, max_lines=14, interactive=False),
            gr.Textbox(label="Files", lines=6, max_lines=20, interactive=False),
            gr.Code(
                label="Cards (README.md)",
                language="markdown",
                lines=12,
                max_lines=40,
                wrap_lines=True,
            ),
        ],
        timer=gr.Timer(2.0, active=False),
    )


def _wire(
    ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab, spaces: bool
) -> None:
    form, buttons = tab.form, tab.buttons
    who_what = [owner, experiment]
    private = dict(api_visibility="private", concurrency_limit=None)

    def tick(who: str | None, name: str | None) -> tuple:
        try:
            v = publish_status(ctx, who, name)
        except UserError as err:
            return f"⚠️ {err}", 0.0, "", "", "", gr.Timer(active=False)
        return v.status, v.percent, v.log, v.files, v.card, gr.Timer(active=v.active)

    def status_of(who: str | None, experiment: str | None) -> tuple:
        return tick(who, experiment)[:5]

    def publish_clicked(
        who: str | None,
        experiment: str | None,
        oauth: gr.OAuthToken | None,
        profile: gr.OAuthProfile | None,
        request: gr.Request,
        *,
        token: str | None = None,
        **values: Any,
    ) -> tuple[str, str]:
        settings = form.build(values)
        with serving(request):  # the job counts for this client (its cap)
            return start_from_tab(
                ctx,
                who,
                experiment,
                settings,
                token=token,
                oauth=oauth,
                profile=profile,
                spaces=spaces,
            )

    def preview_clicked(
        who: str | None,
        experiment: str | None,
        profile: gr.OAuthProfile | None,
        request: gr.Request,
        **values: Any,
    ) -> tuple[str, str]:
        settings = form.build(values)
        with serving(request):
            return start_from_tab(ctx, who, experiment, settings, dry_run=True, profile=profile)

    def runs_of(who: str | None, name: str | None):
        try:
            return gr.Dropdown(choices=trained_runs(ctx, who, name))
        except UserError:
            return gr.Dropdown(choices=[])

    def command_of(experiment: str | None, **values: Any) -> str:
        return publish_command(experiment, form.build(values))

    poll = dict(fn=tick, inputs=who_what, outputs=[*tab.view, tab.timer])
    shown = [tab.message, tab.command]
    buttons["publish"].click(
        publish_clicked,
        who_what,
        shown,
        inputs_kwargs={**form.kwargs, "token": tab.token},
        api_name="start_publish",
    ).then(**poll, **private)
    buttons["preview"].click(
        preview_clicked, who_what, shown, inputs_kwargs=form.kwargs, api_name="preview_publish"
    ).then(**poll, **private)
    buttons["cancel"].click(
        shown_errors(partial(cancel_publish, ctx)), who_what, tab.message, api_name="cancel_publish"
    ).then(**poll, **private)
    buttons["refresh"].click(
        status_of, who_what, tab.view, api_name="publish_status", concurrency_limit=None
    )
    tab.timer.tick(**poll, **private)
    run = form.components["run"]
    experiment.change(**poll, **private).then(runs_of, who_what, run, **private)
    run.focus(runs_of, who_what, run, **private)  # runs trained in the meantime
    gr.on(
        [c.change for c in (experiment, *form.inputs)],
        command_of,
        experiment,
        tab.command,
        inputs_kwargs=form.kwargs,
        trigger_mode="always_last",
        **private,
    )
