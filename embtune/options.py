"""One definition per option.

An option is a dataclass field declared with :func:`option` — generic training options in
:class:`embtune.config.TrainConfig`, an objective's own options in its ``Options`` dataclass. Its
name, type (from the annotation), default, help, choices and check live there once; the command-line
flags (:func:`add_flags`), the YAML validation and the saved ``train_config.json`` are all derived
from it, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from embtune.errors import EmbtuneError

Check = Callable[[Any], "str | None"]  # returns what was expected when the value is wrong


@dataclass(frozen=True)
class Spec:
    """What :func:`option` records in a field's metadata."""

    help: str
    choices: tuple[str, ...] | None = None
    check: Check | None = None
    #: (other option, values): this option only applies when the other option has one of these values
    only_with: tuple[str, tuple[Any, ...]] | None = None
    #: a list option: the flag may be repeated and the YAML value may be a list; held as one comma-separated string
    repeatable: bool = False


def option(default: Any, help: str, *, choices: Iterable[str] | None = None, check: Check | None = None,
           only_with: tuple[str, tuple[Any, ...]] | None = None, repeatable: bool = False) -> Any:
    """Declare a dataclass field as a user-facing option."""
    spec = Spec(help, tuple(choices) if choices is not None else None, check, only_with, repeatable)
    return field(default=default, metadata={"option": spec})


# ---- checks (each returns what was expected, or None when the value is fine) -----------------------

def _finite(v: Any) -> bool:
    return not isinstance(v, float) or math.isfinite(v)  # an int is finite however large


def at_least(low: float) -> Check:
    return lambda v: None if v is None or (v >= low and _finite(v)) else f"a finite value >= {low}"


def positive(v: Any) -> str | None:
    return None if v is None or (v > 0 and _finite(v)) else "a finite value > 0"


def in_range(low: float, high: float, *, include_high: bool = False) -> Check:
    def check(v: Any) -> str | None:
        ok = v is None or (low <= v <= high if include_high else low <= v < high)
        return None if ok else f"a value in [{low}, {high}{']' if include_high else ')'}"
    return check


# ---- reading declared options ------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    name: str
    type: type  # int, float, str or bool
    nullable: bool
    default: Any
    spec: Spec

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def coerce(self, value: Any) -> Any:
        """A value from YAML, JSON or the command line -> this option's type (ValueError if it is not)."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError("may not be empty")
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if self.type is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"expected an integer, got {value!r}")
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ValueError(f"expected an integer, got {value!r}") from None
        if self.type is float:
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError(f"expected a number, got {value!r}") from None
        if self.spec.repeatable and isinstance(value, (list, tuple)):
            items = [str(v).strip() for v in value]
            if not all(items) or any(isinstance(v, (dict, list)) for v in value):
                raise ValueError(f"expected a list of non-empty values, got {value!r}")
            return ",".join(items)
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected a single value, got {value!r}")
        return str(value)

    def problem(self, value: Any) -> str | None:
        """What is wrong with an already coerced value, or None."""
        if self.spec.choices is not None and value is not None and value not in self.spec.choices:
            return f"expected one of {', '.join(self.spec.choices)}, got {value!r}"
        if self.spec.check is not None:
            expected = self.spec.check(value)
            if expected:
                return f"expected {expected}, got {value!r}"
        return None


def _base_type(annotation: Any) -> tuple[type, bool]:
    if isinstance(annotation, str):
        annotation = eval(annotation, {}, {})  # annotations are plain builtins: "int | None"
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return inner[0], len(inner) < len(args)
    return annotation, False


def options_of(cls: type) -> dict[str, Option]:
    """The options a dataclass declares, by name."""
    out: dict[str, Option] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("option")
        if spec is None:
            continue
        typ, nullable = _base_type(f.type)
        out[f.name] = Option(f.name, typ, nullable, f.default, spec)
    return out


def add_flags(parser: argparse.ArgumentParser, options: Iterable[Option], note: Callable[[Option], str] = lambda o: "") -> None:
    """One flag per option; an unset flag is absent from the namespace (it overrides nothing)."""
    for o in options:
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": o.name, "help": o.spec.help + note(o)}
        if o.type is bool:  # --flag, --flag true, --flag false
            kwargs.update(nargs="?", const=True, type=_cli_value(o), metavar="{true,false}")
        else:
            kwargs.update(type=_cli_value(o))
            if o.spec.repeatable:
                kwargs["action"] = "append"
            if o.spec.choices:
                kwargs["choices"] = list(o.spec.choices)
        parser.add_argument(o.flag, **kwargs)


def _cli_value(o: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return o.coerce(None if text.lower() in ("none", "null") and o.nullable else text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = o.type.__name__
    return parse


def error(o: Option, message: str, where: str | None = None) -> EmbtuneError:
    """An error about option ``o``: at a YAML line when it came from there, else naming the flag."""
    return EmbtuneError(f"{where}: option {o.name!r}: {message}" if where else f"{o.flag}: {message}")
