"""Pipeline recipes: every file in configs/ loads; mistakes are named with what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.pipeline.recipe import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if p.name != "prices.yaml"], ids=lambda p: p.name
)
def test_every_recipe_loads(path):
    config = load_config(path)
    assert config.runs and config.task.key


def test_demo_recipe_is_the_offline_one():
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
    assert config.teacher.kind == "builtin" and config.task.source == "synthetic"
    assert {r.format for r in config.runs} == {"cot", "vanilla"}
    assert all(r.student == "tiny" for r in config.runs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "experiment: x\ntask: {key: coin_flip}\nruns: [{name: a, format: cot}]\n"
            "teacher: {kidn: builtin}\n",
            "unknown key.*kidn.*valid keys: kind",
        ),
        ("experiment: x\ntask: {key: coin_flip}\nruns: []\n", "runs: give at least 1 item"),
        (
            "experiment: x\ntask: {key: coin_flip}\n"
            "runs: [{name: a, format: cot}, {name: a, format: vanilla}]\n",
            "unique",
        ),
        ("experiment: x\nruns: [{name: a, format: cot}]\n", "task"),
        ("experiment: [\n", "not valid YAML"),
    ],
)
def test_bad_recipes_say_what_to_change(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_config(path)


def test_a_recipes_teacher_url_is_stored_without_its_credentials(tmp_path):
    from rtdemo.pipeline.run import open_experiment
    from rtdemo.tasks import get_task
    from rtdemo.workspace.store import Store

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "experiment: remote\n"
        "task: {key: coin_flip, source: synthetic}\n"
        "teacher: {kind: openai, model: m, base_url: 'http://user:pw-s3cret@teacher.example/v1'}\n"
        "runs: [{name: cot, format: cot}]\n"
    )
    config = load_config(recipe)
    with Store(tmp_path / "ws") as store:
        exp = open_experiment(store, config, get_task("coin_flip"), [])
        assert exp.config["recipe"]["teacher"]["base_url"] == "http://***@teacher.example/v1"
    assert config.teacher.base_url == "http://user:pw-s3cret@teacher.example/v1"  # in memory
    stored = b"".join(p.read_bytes() for p in (tmp_path / "ws").glob("rtdemo.sqlite3*"))
    assert b"pw-s3cret" not in stored
