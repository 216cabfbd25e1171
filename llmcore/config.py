"""What a form needs to know of one field of a config dataclass, written once, beside the field.

`setting(default, label, help, bounds=..., choices=..., methods=..., group=...)` declares a dataclass
field with its `Setting` (a label, an explanation, the bounds or choices a page accepts, the methods it
concerns and the group a form shows it in); `settings_of(cls)` lists them in the dataclass's order with
their defaults, for the pages that build their forms and sliders from them (the sampler panel, the
next-token explorer, the fine-tune and quantize forms); `out_of_bounds(config)` says which values a config
built from anything (a stored job, a script) holds outside them, each as a `Problem` naming its setting.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Setting:
    label: str
    help: str
    minimum: float | None = None  # a number's bounds (both or neither), inclusive
    maximum: float | None = None
    step: float | None = None  # a slider's step
    choices: tuple[tuple[str, str], ...] = ()  # (value, what it means) of a choice among names
    methods: tuple[str, ...] = ()  # the config's methods this setting concerns (empty: every method)
    group: str = ""  # where a form shows it, e.g. "schedule"

    def applies_to(self, method: str | None) -> bool:
        """Whether the setting means anything for `method` (None: no method chosen, so it may)."""
        return not self.methods or method is None or method in self.methods


@dataclass(frozen=True)
class Problem:
    """Why a config cannot run, and the setting it concerns ("" when it is the config as a whole): a
    form shows it beside that setting's field."""

    message: str
    setting: str = ""


def setting(
    default: Any = MISSING,
    label: str = "",
    help: str = "",
    bounds: tuple[float, float] | tuple[float, float, float] | None = None,
    choices: tuple[tuple[str, str], ...] = (),
    default_factory: Any = MISSING,
    methods: tuple[str, ...] = (),
    group: str = "",
) -> Any:
    """A dataclass field carrying its Setting; `bounds`: (minimum, maximum[, step])."""
    lo, hi, step = (*bounds, None)[:3] if bounds else (None, None, None)
    meta = {"setting": Setting(label, help, lo, hi, step, choices, methods, group)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def settings_of(cls: type) -> dict[str, tuple[Setting, Any]]:
    """Each field of `cls` that has a Setting, by name, with its default, in the dataclass's order."""
    found = {}
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            found[f.name] = (f.metadata["setting"], default)
    return found


def whole_numbers(cls: type) -> set[str]:
    """The fields of `cls` that hold a whole number (int, or int | None), for a form's integer fields."""
    hints = typing.get_type_hints(cls)
    return {
        name for name, hint in hints.items() if hint is int or set(typing.get_args(hint)) == {int, type(None)}
    }


def out_of_bounds(config: Any) -> list[Problem]:
    """A problem for each value of `config` outside its Setting's bounds or choices (None passes: it
    asks for the default or for nothing; so does a setting of another method than the config's)."""
    problems = []
    method = getattr(config, "method", None)
    for name, (s, _) in settings_of(type(config)).items():
        value = getattr(config, name)
        if value is None or not s.applies_to(method):
            continue
        if s.minimum is not None and s.maximum is not None:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and s.minimum <= value <= s.maximum):
                problems.append(Problem(f"{s.label} must be from {s.minimum:g} to {s.maximum:g}.", name))
        if s.choices and value not in {c for c, _ in s.choices}:
            problems.append(Problem(f"{s.label} must be one of {', '.join(c for c, _ in s.choices)}.", name))
    return problems
