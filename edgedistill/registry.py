"""Name -> implementation registries, filled by decorators at import time.

KD losses, distillation strategies, quantisation schemes and data sources each
keep one. A recipe names entries; an unknown name is a recipe error that lists
what is registered.
"""

from __future__ import annotations

from typing import TypeVar

from .errors import RecipeError

T = TypeVar("T")


class Registry(dict[str, T]):
    def __init__(self, kind: str, where: str):
        super().__init__()
        self.kind = kind
        """What an entry is, for messages ("loss", "strategy", ...)."""
        self.where = where
        """Where users name entries, for messages ("[distill] key 'losses'")."""

    def add(self, name: str, item: T) -> T:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self[name] = item
        return item

    def lookup(self, name: str) -> T:
        """The entry, or a RecipeError naming where it was asked for and what exists."""
        if name not in self:
            raise RecipeError(f"{self.where}: unknown {self.kind} {name!r} (registered: {', '.join(sorted(self))})")
        return self[name]


def resolve(ref: str):
    """``"package.module:name"`` -> that object, imported on first use (records name heavy code lazily)."""
    import importlib

    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
