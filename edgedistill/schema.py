"""Typed, strict parsing of TOML tables into plain dataclasses.

Recipes and target profiles are data, not code: every key is declared as a
dataclass field with a type, unknown keys are errors, and each error names the
file, the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from .errors import RecipeError

T = TypeVar("T")

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not valid TOML: file is not UTF-8 text") from None


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_describe(get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return f"a table of {_describe(get_args(tp)[1]).removeprefix('a ').removeprefix('an ')}s"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _shown(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}.get(
        type(value), type(value).__name__
    )
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        for a in args:
            try:
                return _convert(value, a, where)
            except RecipeError:
                continue
        raise RecipeError(f"{where}: expected {_describe(tp)}, got {_shown(value)}")
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise RecipeError(f"{where}: expected {_describe(tp)}, got {_shown(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = get_args(tp)
            return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            _, item = get_args(tp)
            return {str(k): _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return parse_table(tp, value, where)
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported schema type {tp!r}")
    raise RecipeError(f"{where}: expected {_describe(tp)}, got {_shown(value)}")


def fail_key(where: str, key: str, msg: str) -> None:
    """Raise the one-line error of a bad value: ``recipe.toml: [distill] key 'peers': expected 2..16, got 40``."""
    raise RecipeError(f"{where} key {key!r}: {msg}")


def parse_table(cls: type[T], table: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``table``; ``where`` prefixes every error.

    ``where`` looks like ``"recipe.toml: [distill]"``; a key error then reads
    ``recipe.toml: [distill] key 'max_steps': expected an integer, got string '10'``.
    """
    hints = typing.get_type_hints(cls, include_extras=False)
    # A field marked parsed=False is filled by code after parsing (e.g. DistillSpec.options), never from the file.
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.metadata.get("parsed", True)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise RecipeError(f"{where} unknown key {unknown[0]!r} (allowed: {known})")
    kwargs = {}
    for name, f in fields.items():
        if name in table:
            # A nested table is named as TOML writes it ([device], [export.parity]), a value as a key.
            if dataclasses.is_dataclass(hints[name]):
                sub = f"{where[:-1]}.{name}]" if where.endswith("]") else f"{where} [{name}]"
            else:
                sub = f"{where} key {name!r}"
            kwargs[name] = _convert(table[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where} missing required key {name!r} ({_describe(hints[name])})")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(where)
    return obj


def as_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able data (for hashing and reports)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def parse_sections(path: Path, table: dict[str, Any], sections: dict[str, type], top: type[T],
                   required: tuple[str, ...] = ("teacher",)) -> tuple[T, dict[str, Any]]:
    """A recipe file's table as (top-level keys parsed as ``top``, {section: its dataclass}); errors name the
    file and key. Every recipe kind (encoder, LLM) reads its file through this."""
    head = parse_table(top, {k: v for k, v in table.items() if k not in sections}, f"{path}:")
    for key in required:
        if key not in table:
            raise RecipeError(f"{path}: missing required section [{key}]")
    parsed = {}
    for key, cls in sections.items():
        if key not in table:
            continue
        if not isinstance(table[key], dict):
            raise RecipeError(f"{path}: key {key!r}: expected a [{key}] table, got {type(table[key]).__name__}")
        # A section is a dataclass, or a function (table, where) -> object for sections whose keys
        # depend on each other (the [distill] keys a strategy takes depend on 'strategy').
        parse = (lambda t, w, c=cls: parse_table(c, t, w)) if dataclasses.is_dataclass(cls) else cls
        parsed[key] = parse(table[key], f"{path}: [{key}]")
    return head, parsed


def resolve_path(source_path: Path | None, rel: str) -> Path:
    """``rel`` against the folder of the recipe file ``source_path`` (the working folder without one)."""
    p = Path(rel).expanduser()
    base = source_path.parent if source_path else Path.cwd()
    return p if p.is_absolute() else base / p
