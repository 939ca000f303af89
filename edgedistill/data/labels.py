"""Class labels as they appear in the data, and the id <-> name mapping a classifier is trained on.

A label field holds names (``"spam"``, ``"positive"``) or integers; a CSV cell ``"3"`` counts as the
integer 3. Class ids are ranks in the sorted set of labels found in the whole file (integers in
numeric order, names in code-point order), so integer labels ``0..K-1`` keep their values and the
mapping does not depend on the split. Data with no label field at all falls back to the sign of the
score (``negative`` / ``positive``, dropping near-neutral scores).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from ..errors import DataError

SCORE_LABELS = ("negative", "positive")
"""Names of the two classes derived from a score's sign (data without labels, e.g. VADER)."""
_INT = re.compile(r"^[+-]?\d+$")


def parse_label(value, where: str, field: str) -> int | str | None:
    """A raw label cell as an int, a name, or None (missing / empty)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise DataError(f"{where}: label {field!r} = {value!r} is neither an integer nor a name")
    if isinstance(value, str):
        text = value.strip()
        return int(text) if _INT.match(text) else text
    raise DataError(f"{where}: label {field!r} = {value!r} is neither an integer nor a name")


def label_names(labels: Iterable[int | str | None], source: str = "[data]") -> list[str] | None:
    """Sorted class names of the explicit labels, or None when no example has one."""
    found = {lab for lab in labels if lab is not None}
    if not found:
        return None
    ints = {lab for lab in found if isinstance(lab, int)}
    if ints and len(ints) != len(found):
        names = sorted(str(x) for x in found - ints)[:3]
        raise DataError(f"{source}: the label field mixes integers ({sorted(ints)[:3]}) and names ({names}); "
                        "use one kind for every row")
    return [str(x) for x in sorted(found)]


def class_counts(labels, names: list[str]) -> dict[str, int]:
    """Examples per class name (every class listed, zeros included)."""
    c = Counter(int(x) for x in labels)
    return {name: int(c.get(i, 0)) for i, name in enumerate(names)}
