"""User data files: JSON Lines, CSV and plain text."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import DataError
from .base import Example, register_source
from .labels import parse_label


def _resolve(spec, recipe) -> Path:
    path = recipe.resolve(spec.path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found ([data] path = {spec.path!r})")
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _example(row: dict, spec, path: Path, where: str, n: int) -> Example:
    text = row.get(spec.text_field)
    if not isinstance(text, str):
        raise DataError(f"{path}:{where}: missing text field {spec.text_field!r} (set [data] text_field)")
    score = row.get(spec.score_field)
    label = row.get(spec.label_field)
    try:
        score = None if score in (None, "") else float(score)
    except (TypeError, ValueError):
        raise DataError(f"{path}:{where}: {spec.score_field!r} must be a number (got {score!r})") from None
    label = parse_label(label, f"{path}:{where}", spec.label_field)
    ident = row.get("id")
    return Example(id=f"{path.stem}:{ident if ident not in (None, '') else n}", text=text, score=score, label=label,
                   domain=str(row.get("domain", path.stem)))


@register_source("jsonl")
def load_jsonl(spec, recipe) -> list[Example]:
    path = _resolve(spec, recipe)
    out = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object per line")
        out.append(_example(row, spec, path, str(n), n))
    if not out:
        raise DataError(f"{path}: no sentences in file")
    return out


@register_source("csv")
def load_csv(spec, recipe) -> list[Example]:
    path = _resolve(spec, recipe)
    rows = list(csv.DictReader(_read_text(path).splitlines()))
    if not rows:
        raise DataError(f"{path}: no rows (a header line with {spec.text_field!r} and one row at least are needed)")
    return [_example(r, spec, path, str(n), n) for n, r in enumerate(rows, start=2)]


@register_source("txt")
def load_txt(spec, recipe) -> list[Example]:
    path = _resolve(spec, recipe)
    out = [Example(id=f"{path.stem}:{n}", text=line.strip(), domain=path.stem)
           for n, line in enumerate(_read_text(path).splitlines(), start=1) if line.strip()]
    if not out:
        raise DataError(f"{path}: no sentences in file")
    return out
