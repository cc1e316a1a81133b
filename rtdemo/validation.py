"""Settings from plain data, checked against one typed definition.

Every set of settings (`TrainSettings`, `GenerationSettings`, `TeacherSpec`, the recipe
dataclasses) is a stdlib dataclass whose fields declare their type, their range
(`Annotated[int, Field(ge=1)]`) and their help text (`setting(default, "help")`). From that one
definition come:

- `from_data(cls, data, where)`: a recipe section or the app's values as a `cls`, with strict
  types (the text "2" is not a number), the declared ranges and no unknown keys;
- `check_values(cls, values, where)`: some of `cls`'s fields (training overrides), checked alike;
- `check_fields(obj)`: the ranges and choices, for an object built in Python (`__post_init__`);
- `add_flags(group, cls, names)`: argparse flags (type, default, choices, help) whose values are
  checked against the same ranges as they are parsed.

A problem is one line naming the setting, the value and what is expected, e.g.
`demo.yaml: runs[0].diverse_samples: expected an integer, got '2' (a string)`, raised as a
`UserError` (the CLI prints it and exits with status 2, the app shows it).

pydantic (v2) does the checking: its `TypeAdapter` validates stdlib dataclasses as they are
(nested ones, lists, optionals, `Literal` choices, `annotated-types` ranges) and says where each
problem is, so the dataclasses stay plain and nothing that builds them in Python changes. Plain
data is validated in pydantic's strict JSON mode: YAML, the app's forms and CLI values are
JSON-like, and strict JSON mode turns mappings into dataclasses and lists into tuples but never
text into numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from rtdemo.errors import UserError

T = TypeVar("T")

#: The pydantic config of every settings dataclass: strict types, unknown keys refused.
STRICT = ConfigDict(strict=True, extra="forbid")


class SettingError(UserError, ValueError):
    """A bad setting found in a `__post_init__`. A `ValueError` too, so that pydantic reports it
    with the place of the settings in a recipe."""


def typed(cls: type[T]) -> type[T]:
    """Class decorator: validate `cls` strictly and refuse unknown keys (`from_data`)."""
    cls.__pydantic_config__ = STRICT  # type: ignore[attr-defined]
    return cls


def setting(default: Any = dataclasses.MISSING, help: str = "", *, hint: str = "", **kw) -> Any:
    """A dataclass field with its help text (the CLI's `--help`) and a hint added to errors."""
    metadata = {"help": help, **({"hint": hint} if hint else {})}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata, **kw)


# ---- plain data → settings ------------------------------------------------------------------


@functools.cache
def _adapter(tp: Any, strict: bool = True) -> TypeAdapter:
    if dataclasses.is_dataclass(tp):
        return TypeAdapter(tp)
    return TypeAdapter(tp, config=ConfigDict(strict=strict))


def _json(data: Any) -> str:
    return json.dumps(data, default=str)


def from_data(cls: type[T], data: Any, where: str = "") -> T:
    """A `cls` from plain data (a recipe section, the app's values), every field checked.

    Raises `UserError` with one line: where, which key, the value and what is expected.
    """
    try:
        return _adapter(cls).validate_json(_json(data))
    except ValidationError as err:
        raise UserError(describe(err, cls, where)) from None


def check_values(
    cls: type, values: Mapping[str, Any], where: str = "", at: tuple = ()
) -> dict[str, Any]:
    """Some of `cls`'s fields (e.g. training overrides): unknown keys refused, each value checked
    against its field's type and range. Returns the values as validated. `where` and `at` say
    where the values are (`"demo.yaml"`, `("runs", 0, "train")`)."""
    place = _join(where, _path(at))
    if not isinstance(values, Mapping):
        raise UserError(_join(place, f"expected a mapping of settings, got {_show(values)}"))
    fields = _fields(cls)
    out = {}
    for name, value in values.items():
        if name not in fields:
            raise UserError(_join(place, _unknown(str(name), list(fields))))
        try:
            out[name] = _adapter(_hints(cls)[name]).validate_json(_json(value))
        except ValidationError as err:
            raise UserError(describe(err, cls, where, name, at)) from None
    return out


def check_fields(obj: Any, prefix: str = "") -> None:
    """The declared ranges and choices of a dataclass built in Python (call in `__post_init__`).
    Types are not checked here: Python callers pass a `Path` for a `str` and the like."""
    cls = type(obj)
    for name in _fields(cls):
        tp = _hints(cls)[name]
        if not _constrained(tp):
            continue
        try:
            _adapter(tp, strict=False).validate_python(getattr(obj, name))
        except ValidationError as err:
            raise SettingError(prefix + describe(err, cls, "", name)) from None


# ---- one-line messages ----------------------------------------------------------------------


def describe(
    err: ValidationError, cls: Any = None, where: str = "", name: str = "", at: tuple = ()
) -> str:
    """One line for a pydantic error of `cls` (of its field `name`, if given; `at`: where `cls`
    sits in a recipe, e.g. `("runs", 0, "train")`): the first problem, and how many more."""
    problems = err.errors(include_url=False)
    first = problems[0]
    loc = ((name,) if name else ()) + tuple(first["loc"])
    text = _problem(first, cls, loc)
    keyed = first["type"] in _KEYED
    place = _path(at + (loc[:-1] if keyed else loc))
    if place and text.startswith("must be"):
        place, text = f"{place} {text}", ""
    line = _join(_join(where, place), text)
    hint = "" if keyed or "write " in text else _hint(cls, loc)
    if hint:
        line += f"; {hint}"
    if len(problems) > 1:
        line += f" (and {len(problems) - 1} more problem{'s' * (len(problems) > 2)})"
    return line


_KEYED = ("unexpected_keyword_argument", "extra_forbidden", "missing_argument", "missing")


def _problem(e: dict, cls: Any, loc: tuple) -> str:
    kind, value, ctx = e["type"], e.get("input"), e.get("ctx") or {}
    expected = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "a whole number",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "text",
        "list_type": "a list",
        "tuple_type": "a list",
        "dict_type": "a mapping",
        "dataclass_type": "a mapping of settings",
        "dataclass_exact_type": "a mapping of settings",
        "none_required": "nothing",
    }
    if kind in expected:
        return f"expected {expected[kind]}, got {_show(value)}{_number_hint(kind, value)}"
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
        "multiple_of": "a multiple of",
    }
    if kind in bounds:
        key = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le"}
        limit = ctx.get(key.get(kind, "lt" if kind == "less_than" else "multiple_of"))
        limit = f"{limit:g}" if isinstance(limit, float) else limit
        return f"must be {bounds[kind]} {limit}, got {_show(value)}"
    if kind == "literal_error":
        options = _literal_options(cls, loc) or [ctx.get("expected", "")]
        choice = " or ".join(options) if len(options) <= 2 else "one of " + ", ".join(options)
        return f"must be {choice}, got {value!r}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return f"give at least {least} item{'s' * (least != 1)}, got {_show(value)}"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return _unknown(str(loc[-1]), list(_fields(_type_at(cls, loc[:-1]))))
    if kind == "missing_argument" or kind == "missing":
        return f"missing key {loc[-1]!r}"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return f"{e['msg']}, got {_show(value)}"


def _unknown(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    guess = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key {key!r}{guess}; valid keys: {', '.join(valid)}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "an empty list" if not value else f"{list(value)!r} (a list)"
    if isinstance(value, dict):
        return f"{value!r} (a mapping)"
    return repr(value)


def _number_hint(kind: str, value: Any) -> str:
    if not isinstance(value, str) or kind not in ("int_type", "float_type", "int_parsing"):
        return ""
    m = re.fullmatch(r"\s*([+-]?\d+)[eE]([+-]?\d+)\s*", value)
    if m:  # YAML 1.1 (PyYAML) needs a dot for a number in exponent form
        return f": write {m[1]}.0e{m[2]} (YAML reads {value.strip()} as text)"
    try:
        float(value)
    except ValueError:
        return ""
    return ": write it without quotes"


def _path(loc: Iterable) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(head: str, tail: str) -> str:
    return f"{head}: {tail}" if head and tail else head or tail


# ---- walking the types ----------------------------------------------------------------------


def _fields(cls: Any) -> dict[str, dataclasses.Field]:
    if not dataclasses.is_dataclass(cls):
        return {}
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _strip(tp: Any) -> Any:
    """`tp` without `Annotated` and `None`: `Annotated[int, ...] | None` → `int`."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _type_at(cls: Any, loc: tuple) -> Any:
    """The type at `loc` inside dataclass `cls` (`("runs", 0)` → `RunConfig`)."""
    tp = cls
    for part in loc:
        tp = _strip(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        elif dataclasses.is_dataclass(tp) and part in _fields(tp):
            tp = _hints(tp)[part]
        else:
            return Any
    return _strip(tp)


def _literal_options(cls: Any, loc: tuple) -> list[str]:
    tp = _type_at(cls, loc) if dataclasses.is_dataclass(cls) and loc else _strip(cls)
    if typing.get_origin(tp) is Literal:
        return [repr(a) for a in typing.get_args(tp)]
    return []


def _hint(cls: Any, loc: tuple) -> str:
    if not loc or not isinstance(loc[-1], str):
        return ""
    owner = _type_at(cls, loc[:-1]) if dataclasses.is_dataclass(cls) else None
    f = _fields(owner).get(loc[-1])
    return f.metadata.get("hint", "") if f is not None else ""


def _constrained(tp: Any) -> bool:
    """Whether `tp` declares a range or choices (`Annotated[..., Field(...)]`, `Literal`)."""
    origin = typing.get_origin(tp)
    if origin in (Annotated, Literal):
        return True
    return any(_constrained(a) for a in typing.get_args(tp))


# ---- argparse flags -------------------------------------------------------------------------


def flag_type(cls: type, name: str) -> Callable[[str], Any]:
    """An argparse `type` for field `name` of `cls`: the text as the field's type, in its range;
    else `ArgumentTypeError` ('expected a number, got 'fast'')."""
    tp = _hints(cls)[name]
    base = _strip(tp)

    def convert(text: str) -> Any:
        if base is int:
            try:
                value: Any = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        elif base is float:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        else:
            value = text
        try:
            return _adapter(tp, strict=False).validate_python(value)
        except ValidationError as err:
            message = _problem(err.errors()[0], None, ())
            hint = _fields(cls)[name].metadata.get("hint")
            raise argparse.ArgumentTypeError(message + (f"; {hint}" if hint else "")) from None

    convert.__name__ = getattr(base, "__name__", "value")
    return convert


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    names: Iterable[str],
    *,
    defaults: bool = True,
    aliases: Mapping[str, str] | None = None,
) -> None:
    """`--name-with-dashes` flags for fields `names` of dataclass `cls`, with the field's type,
    range, choices (a `Literal`) and help text. `defaults=False`: a flag not given is None (an
    override). `aliases`: a field's old flag spelling, hidden from `--help`, same destination."""
    fields = _fields(cls)
    for name in names:
        f = fields[name]
        flag = "--" + name.replace("_", "-")
        options: dict[str, Any] = {"dest": name, "help": f.metadata.get("help") or None}
        choices = _literal_options(cls, (name,))
        if choices:
            options["choices"] = typing.get_args(_strip(_hints(cls)[name]))
        else:
            options["type"] = flag_type(cls, name)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and defaults:
            options["required"] = True
        elif defaults:
            options["default"] = f.default
        parser.add_argument(flag, **options)
        old = (aliases or {}).get(name)
        if old:
            hidden = {k: v for k, v in options.items() if k not in ("required", "default")}
            parser.add_argument(old, **{**hidden, "help": argparse.SUPPRESS})


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one-line `UserError`s ('--x: expected ..., got ...'):
    the CLI prints them as `error: ...` with exit status 2, the app shows them."""

    def error(self, message: str) -> typing.NoReturn:
        message = re.sub(r"^argument (\S+): must be", r"\1 must be", message)
        message = re.sub(r"^argument ", "", message)
        if ", got " not in message and "choose from" not in message:  # point to the flags
            message += f" (see {self.prog} --help)"
        raise UserError(message)
