from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DataError
from ..registry import Registry

SOURCES: Registry[Callable] = Registry("data source", "[data] key 'source'")


@dataclass(frozen=True)
class Example:
    id: str
    """Stable identity (e.g. ``"movie:17"``); the split is a hash of it."""
    text: str
    score: float | None = None
    label: int | str | None = None
    """A class as written in the data (an integer or a name); ids come from :mod:`edgedistill.data.labels`."""
    domain: str = ""


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def register_source(name: str):
    return lambda fn: SOURCES.add(name, fn)


def _bucket(key: str, modulus: int) -> int:
    # md5 is used as a stable, well-mixed hash here, not for security.
    return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:8], "big") % modulus


def load_examples(spec, recipe) -> list[Example]:
    """All examples of the recipe's data source, deduplicated by id, limited if asked."""
    examples = SOURCES.lookup(spec.source)(spec, recipe)
    if not examples:
        raise DataError(f"data source {spec.source!r} produced no sentences")
    seen: set[str] = set()
    unique = []
    for ex in examples:
        if ex.id not in seen:
            seen.add(ex.id)
            unique.append(ex)
    if spec.limit is not None and len(unique) > spec.limit:
        # A hash order gives a subset that is deterministic and mixes domains.
        unique = sorted(unique, key=lambda e: _bucket("limit:" + e.id, 1 << 62))[: spec.limit]
    return unique


def split_examples(examples: list[Example], shares: list[int]) -> Splits:
    """Assign each example to train/validation/test by a hash of its id.

    The assignment of an example never depends on which other examples are
    present, so adding data never moves a test sentence into training.
    """
    total = sum(shares)
    train, val, test = [], [], []
    for ex in examples:
        b = _bucket(ex.id, total)
        (train if b < shares[0] else val if b < shares[0] + shares[1] else test).append(ex)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if not part:
            raise DataError(
                f"the {name} split is empty ({len(examples)} sentences in all); use more data or change [data] split"
            )
    return Splits(train, val, test)


def probe_labels(examples: list[Example], min_abs_score: float,
                 names: list[str] | None = None) -> tuple[list[int], list[int]]:
    """(indices, class ids) of the labelled examples.

    With ``names`` (the data's label vocabulary, :func:`edgedistill.data.labels.label_names`): the
    examples that carry a label, as its rank in ``names`` (rows with only a score are left out: a
    score's sign means nothing among named classes). Without: an explicit integer label wins, else the
    sign of the score, dropping near-neutral scores (|score| < min_abs_score) whose sign human raters
    barely agree on.
    """
    idx, labels = [], []
    ids = {name: i for i, name in enumerate(names or [])}
    for i, ex in enumerate(examples):
        if names is not None:
            if ex.label is not None:
                idx.append(i)
                labels.append(ids[str(ex.label)])
        elif ex.label is not None:
            idx.append(i)
            labels.append(int(ex.label))
        elif ex.score is not None and abs(ex.score) >= min_abs_score:
            idx.append(i)
            labels.append(int(ex.score > 0))
    return idx, labels
