"""Host package energy from Linux powercap (Intel RAPL), where the host exposes it.

This is the energy of the machine running the benchmark, labelled ``measured-rapl (host)``; it is
never reported as device energy (that is modelled, see energy.py). Counters are cumulative
microjoules per package that wrap at ``max_energy_range_uj``; reading them usually needs root.
"""

from __future__ import annotations

import os
from pathlib import Path

ENERGY_KIND = "measured-rapl (host)"
ROOT_ENV = "EDGEDISTILL_RAPL_ROOT"
"""Tests point this at a fake powercap tree."""


def _root() -> Path:
    return Path(os.environ.get(ROOT_ENV, "/sys/class/powercap"))


def _packages() -> list[Path]:
    # Top-level package domains only (intel-rapl:0, :1, ...); their sub-domains are included in them.
    return sorted(p for p in _root().glob("intel-rapl:*") if p.name.count(":") == 1)


def available() -> bool:
    return any(os.access(p / "energy_uj", os.R_OK) for p in _packages())


def read() -> dict[str, tuple[int, int]] | None:
    """Package -> (energy_uj, max_energy_range_uj), or None where the counters cannot be read."""
    out = {}
    for p in _packages():
        try:
            out[p.name] = (int((p / "energy_uj").read_text()), int((p / "max_energy_range_uj").read_text()))
        except (OSError, ValueError):
            return None
    return out or None


def joules_between(before: dict | None, after: dict | None) -> float | None:
    """Energy of all packages between two reads, correcting for counter wrap-around."""
    if not before or not after or before.keys() != after.keys():
        return None
    total = 0
    for name, (e0, wrap) in before.items():
        e1 = after[name][0]
        total += e1 - e0 if e1 >= e0 else e1 + wrap - e0
    return total / 1e6
