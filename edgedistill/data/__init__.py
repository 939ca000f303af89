"""Text sources, deterministic splits and probe labels.

A source turns a :class:`~edgedistill.recipe.DataSpec` into a list of
:class:`Example`. Sources register themselves by name, so a new corpus is one
function in one file.
"""

from . import files as _files  # noqa: F401  (registers jsonl/csv/txt)
from . import vader as _vader  # noqa: F401  (registers vader)
from .base import Example, Splits, load_examples, register_source, split_examples

__all__ = ["Example", "Splits", "load_examples", "register_source", "split_examples"]
