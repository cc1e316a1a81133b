"""A tab's form read by name: which component holds which field of a form dataclass.

    fields = FormFields(TrainForm, student=student_dd, recipe=recipe_radio, ...)
    start.click(start_clicked, [owner, experiment], outputs, inputs_kwargs=fields.kwargs, ...)

    def start_clicked(owner, experiment, **values):
        form = fields.build(values)  # TrainForm.of(student=..., recipe=..., ...)

Gradio passes the components of `inputs_kwargs` to the handler as keyword arguments and names an
endpoint's API parameters after those keys, so a `gradio_client` call sees `student`, `recipe`, ...
(never `param_N`), and no handler depends on the order of a list of components. The keys follow
the dataclass's field order, which is also the order of the API's positional parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from gradio.components import Component

F = TypeVar("F")


class FormFields(Generic[F]):
    """The components of a form dataclass, one per field, by field name.

    `build` makes the form from the values by name; it defaults to the dataclass's `of`
    classmethod (which cleans up what Gradio sends: floats for ints, None for a cleared box), else
    the dataclass itself. Every field needs a component, and every component a field.
    """

    def __init__(
        self, form: type[F], build: Callable[..., F] | None = None, /, **components: Component
    ) -> None:
        if not dataclasses.is_dataclass(form):
            raise TypeError(f"{form!r} is not a dataclass")
        names = [f.name for f in dataclasses.fields(form)]
        unknown = [n for n in components if n not in names]
        missing = [n for n in names if n not in components]
        if unknown or missing:
            raise TypeError(
                f"{form.__name__}: components for no field {unknown}, fields with no component "
                f"{missing}"
            )
        self.form = form
        self._build: Callable[..., F] = build or getattr(form, "of", form)
        self.components: dict[str, Component] = {n: components[n] for n in names}

    @property
    def names(self) -> list[str]:
        """The field names, in the dataclass's order."""
        return list(self.components)

    @property
    def inputs(self) -> list[Component]:
        """The components, in the dataclass's field order (for triggers such as `.change`)."""
        return list(self.components.values())

    @property
    def kwargs(self) -> dict[str, Component]:
        """`inputs_kwargs` of an event: field name → component (a copy: add extra inputs to it)."""
        return dict(self.components)

    def build(self, values: Mapping[str, Any]) -> F:
        """The form from the handler's keyword values (keys that are no field are ignored)."""
        return self._build(**{name: values[name] for name in self.components})
