"""Tab forms are read by name (`rtdemo.ui.forms.FormFields`), and the app's API endpoints keep
named parameters for `gradio_client`."""

from __future__ import annotations

import re

import gradio as gr
import pytest

from rtdemo.ui.forms import FormFields
from rtdemo.ui.train_actions import TrainForm

TRAIN_FIELDS = [
    "student",
    "recipe",
    "method",
    "formats",
    "run_name",
    "max_steps",
    "epochs",
    "batch_size",
    "learning_rate",
    "diverse_samples",
    "filter_answers",
    "max_length",
]


def _components(names: list[str]) -> dict[str, gr.components.Component]:
    return {name: gr.Textbox(label=name, render=False) for name in names}


def test_the_form_is_built_by_field_name_whatever_the_component_order():
    shuffled = [*reversed(TRAIN_FIELDS[::2]), *TRAIN_FIELDS[1::2]]
    components = _components(shuffled)
    fields = FormFields(TrainForm, **components)
    assert fields.names == TRAIN_FIELDS  # the dataclass's order, not the caller's
    assert fields.kwargs == {name: components[name] for name in TRAIN_FIELDS}
    assert fields.inputs == [components[name] for name in TRAIN_FIELDS]
    values = {  # as Gradio sends them (numbers as floats), in yet another order, plus a stranger
        "filter_answers": False,
        "api_key": "not a field",
        "learning_rate": 0.01,
        "max_steps": 50.0,
        "student": " gpt2 ",
        "diverse_samples": 2.0,
        "recipe": "paper",
        "method": "lora",
        "formats": "vanilla baseline",
        "run_name": "",
        "epochs": 3.0,
        "batch_size": 4.0,
        "max_length": 96.0,
    }
    assert fields.build(values) == TrainForm(
        student="gpt2",  # TrainForm.of cleans up what Gradio sends
        recipe="paper",
        method="lora",
        formats="vanilla baseline",
        max_steps=50,
        epochs=3.0,
        batch_size=4,
        learning_rate=0.01,
        diverse_samples=2,
        filter_answers=False,
        max_length=96,
    )


def test_every_field_needs_a_component_and_every_component_a_field():
    components = _components(TRAIN_FIELDS)
    with pytest.raises(TypeError, match=r"no component.*'epochs'"):
        FormFields(TrainForm, **{n: c for n, c in components.items() if n != "epochs"})
    with pytest.raises(TypeError, match=r"no field.*'lr'"):
        FormFields(TrainForm, **components, lr=gr.Number(render=False))


def test_a_build_function_replaces_the_dataclass_s_own():
    from rtdemo.ui.experiments import TaskChoice
    from rtdemo.ui.task_tab import task_choice

    names = [
        "key",
        "source",
        "seed",
        "size",
        "length",
        "file",
        "question_column",
        "answer_column",
        "answer_type",
        "limit",
    ]
    fields = FormFields(TaskChoice, task_choice, **_components(names[::-1]))
    values = dict(
        answer_type=None,
        answer_column=" a ",
        question_column=None,
        limit=5.0,
        file=None,
        length=3.0,
        size=9.0,
        seed=1.0,
        source="auto",
        key="coin_flip",
    )
    assert fields.build(values) == TaskChoice(
        "coin_flip", "auto", 1, 9, 3, None, "question", "a", "", 5
    )


# The endpoints whose handlers read a form by name, with their parameters in order (the owner
# is session state, never an API parameter).
FORM_ENDPOINTS = {
    "/start_training": ["experiment", *TRAIN_FIELDS],
    "/estimate_generation": [
        "experiment",
        "teacher",
        "base_url",
        "model",
        "mode",
        "replay_file",
        "split",
        "samples",
        "temperature",
        "max_tokens",
        "concurrency",
        "budget",
        "limit",
        "api_key",
    ],
    "/chat": [
        "experiment",
        "question",
        "teacher",
        "base_url",
        "model",
        "mode",
        "temperature",
        "teacher_max_tokens",
        "student",
        "student_max_tokens",
        "key",
    ],
    "/start_publish": [
        "experiment",
        "run",
        "what",
        "repo_id",
        "dataset_repo_id",
        "visibility",
        "merged",
        "all_samples",
        "license",
        "token",
    ],
    "/create_experiment": [
        "name",
        "key",
        "source",
        "seed",
        "size",
        "length",
        "file",
        "question_column",
        "answer_column",
        "answer_type",
        "limit",
    ],
    "/preview_task": [
        "key",
        "source",
        "split",
        "limit",
        "seed",
        "size",
        "length",
        "file",
        "question_column",
        "answer_column",
        "answer_type",
    ],
    "/review_queue": ["experiment", "verdict", "length", "state", "text"],
    "/review_bulk": ["experiment", "verdict", "length", "state", "text", "action"],
    "/review_decide": ["experiment", "sample_id", "action", "edited"],
    "/export_curated": ["experiment", "fmt", "student", "include_all"],
}


@pytest.mark.slow
def test_the_launched_apps_endpoints_have_named_parameters(launched_app):
    from gradio_client import Client

    _, url = launched_app
    api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    named = {
        endpoint: [p["parameter_name"] for p in info["parameters"]]
        for endpoint, info in api["named_endpoints"].items()
    }
    unnamed = {e: ps for e, ps in named.items() if any(re.fullmatch(r"param_\d+", p) for p in ps)}
    assert not unnamed, unnamed
    assert not api["unnamed_endpoints"]
    for endpoint, parameters in FORM_ENDPOINTS.items():
        assert named[endpoint] == parameters, endpoint
    assert named["/start_generation"] == named["/estimate_generation"]
    assert named["/preview_publish"] == named["/start_publish"][:-1]  # no token for a preview
