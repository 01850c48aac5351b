"""Recipes: TOML files read into dataclasses, with `--set section.key=value` overrides.

The dataclasses are the schema (as in litgpt, the signature is the config): every key in a recipe
must be a field, every value must have the field's type, and an error names the file, the dotted
key and what was expected, with the closest known key when one was probably mistyped. Ranges and
choices are each dataclass's own `__post_init__` (`check_fields`), so a value out of range is
refused when the recipe is read, before any work.
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value). The value is read as TOML
    (`4`, `1e-3`, `true`, `[1, 2]`, `"x"`); anything that is not valid TOML is taken as a string."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected section.key=value, e.g. --set model.dim=256")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise RecipeError(f"--set {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"--set {text!r}: {part!r} is a value, not a section")
        node[path[-1]] = value
    return data


def read_toml(path: str | Path, overrides: list[str] = (), example: str = "recipes/tiny.toml") -> tuple[dict, str]:
    """The TOML file at `path` as a dict with overrides applied, and how to name it in errors."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe not found (recipes live in recipes/, e.g. {example})") from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not a UTF-8 text file, so not a TOML recipe ({e.reason} at byte {e.start})"
                          ) from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: a folder, not a TOML recipe (e.g. {example})") from None
    data = apply_overrides(data, list(overrides))
    return data, f"{path}" + (" (with --set overrides)" if overrides else "")


def load_recipe(path: str | Path, schema: type[T], overrides: list[str] = ()) -> T:
    """Read the TOML recipe at `path` into the dataclass `schema`, after applying overrides."""
    data, where = read_toml(path, overrides)
    return from_dict(schema, data, where)


def from_dict(schema: type[T], data: dict, where: str, prefix: str = "") -> T:
    """Build dataclass `schema` from a nested dict, checking every key and value."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: {prefix.rstrip('.') or 'recipe'} must be a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
            raise RecipeError(f"{where}: unknown key '{prefix}{key}'{hint}")
        kwargs[key] = _convert(value, hints[key], where, prefix + key)
    try:
        return schema(**kwargs)
    except (TypeError, ValueError) as e:
        # A message about one field ("micro_batch = 0: ...", from check_fields) gets its dotted key.
        if str(e).split(" ", 1)[0] in fields:
            raise RecipeError(f"{where}: {prefix}{e}") from None
        raise RecipeError(f"{where}: {prefix.rstrip('.') or 'recipe'}: {e}") from None


_COMPARE = {">=": operator.ge, ">": operator.gt}


def in_range(value: float, spec: str) -> bool:
    """Whether `value` lies in `spec`: ">= 1", "> 0", or an interval such as "[0, 1)" or "(0, 1]"."""
    if spec[0] in "[(":
        low, high = (float(x) for x in spec[1:-1].split(","))
        return ((value >= low) if spec[0] == "[" else (value > low)) and \
            ((value <= high) if spec[-1] == "]" else (value < high))
    op, bound = spec.split()
    return _COMPARE[op](value, float(bound))


def check_fields(obj: Any, ranges: dict[str, str] | None = None, choices: dict[str, tuple] | None = None) -> None:
    """Raise ValueError naming the first field of dataclass `obj` outside its range (`in_range`) or
    its choices, with what is allowed. None (an unset optional) passes; a list is checked item by item."""
    for name, spec in (ranges or {}).items():
        value = getattr(obj, name)
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None and not in_range(v, spec):
                kind = "an integer" if isinstance(v, int) else "a number"
                allowed = f"{kind} {spec}" if spec[0] in "<>" else f"{kind} in {spec}"
                raise ValueError(f"{name} = {value!r}: expected {allowed}")
    for name, allowed in (choices or {}).items():
        value = getattr(obj, name)
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None and v not in allowed:
                raise ValueError(f"{name} = {value!r}: expected one of {', '.join(map(repr, allowed))}")


def _convert(value: Any, hint: Any, where: str, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where, key)
            except RecipeError as e:
                errors.append(str(e))
        raise RecipeError(errors[0])
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise RecipeError(f"{where}: {key} = {value!r}: expected a list")
        item = args[0] if args else Any
        items = [_convert(v, item, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: {key} = {value!r}: expected a table")
        return value
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        raise RecipeError(f"{where}: {key} = {value!r}: expected {names.get(hint, hint.__name__)}")
    return value


def positive_int(text: str) -> int:
    """An argparse `type` for counts (--limit, --pages, ...): an integer >= 1, or a one-line usage error."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def to_dict(obj: Any) -> Any:
    """A recipe dataclass back to plain data (for saving the exact config of a run)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
