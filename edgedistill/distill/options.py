"""Typed per-strategy ``[distill]`` options, and how a recipe's flat ``[distill]`` table is split.

A recipe keeps every distillation key in one ``[distill]`` table (``generations = 2`` beside
``max_steps``), but only the keys common to all strategies live on ``DistillSpec``; the rest belong
to the strategy that reads them: each registered strategy names a dataclass (its ``Options``) and
the parser builds it from the keys the table has for it. A key that belongs to another strategy
is an error naming the strategies that take it, so a ``peers = 3`` left in a ``kd`` recipe is not
silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import RecipeError


@dataclass
class NoOptions:
    """The options of a strategy with no keys of its own; every options class derives from it."""

    def validate(self, where: str) -> None:
        """Checks that need only this dataclass's own fields (types are checked by the parser)."""

    def cross_check(self, spec, where: str) -> None:
        """Checks against the common ``[distill]`` keys (e.g. scheduled losses are in ``losses``)."""

    def scheduled_losses(self) -> dict[str, float]:
        """Loss name -> weight at the last step, for losses whose weight moves during training."""
        return {}


def option_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def owners(key: str) -> list[str]:
    """Registered strategies whose options take ``key`` (sorted)."""
    from .strategies import STRATEGIES

    return sorted(name for name, cls in STRATEGIES.items() if key in option_names(cls.Options))


def split_table(table: dict[str, Any], common: set[str], where: str) -> tuple[dict[str, Any], dict[str, Any], type]:
    """``[distill]`` as (common keys, the strategy's option keys, its Options class).

    Unknown strategies fail here with the registry's list; keys neither common nor the
    strategy's own fail with the strategies that do take them, or as unknown keys."""
    from .strategies import STRATEGIES

    name = table.get("strategy", "embedding")
    if not isinstance(name, str):
        raise RecipeError(f"{where} key 'strategy': expected a string, got {name!r}")
    if name not in STRATEGIES:
        raise RecipeError(f"{where} key 'strategy': unknown strategy {name!r} (registered: "
                          f"{', '.join(sorted(STRATEGIES))})")
    opts_cls = STRATEGIES[name].Options
    own = option_names(opts_cls)
    mine = {k: v for k, v in table.items() if k in own}
    rest = {k: v for k, v in table.items() if k not in own}
    for key in rest:
        if key in common:
            continue
        takers = owners(key)
        if takers:
            raise RecipeError(f"{where} key {key!r}: applies to strategies {', '.join(takers)}, not to "
                              f"strategy {name!r}; remove it or pick one of those strategies")
        raise RecipeError(f"{where} unknown key {key!r} (allowed with strategy {name!r}: "
                          f"{', '.join(sorted(common | own))})")
    return rest, mine, opts_cls


def as_flat(spec) -> dict[str, Any]:
    """A DistillSpec as the flat ``[distill]`` table a recipe writes (common keys, then options; TOML has no
    null, so an unset key is left out)."""
    out = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "options"}
    out.update(dataclasses.asdict(spec.options))
    return {k: v for k, v in out.items() if v is not None}
