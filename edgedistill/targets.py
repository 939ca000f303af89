"""Device target profiles (``targets/*.toml``): facts with provenance, budgets
and the export recipe that suits the device.

Every numeric constant carries a value, optionally ``lo``/``hi``, a unit, a
kind (SPEC, MEAS-3P, OEM, DERIVED, ASSUMED, LOCAL) and the key of its source
in the file's ``[sources]`` table. A user can add a target by writing a file
in the same format and passing its path wherever a target name is accepted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import RecipeError
from .schema import as_dict, load_toml, parse_table

TARGET_VERSION = 1
Kind = Literal["SPEC", "MEAS-3P", "OEM", "DERIVED", "ASSUMED", "LOCAL"]

# The device model needs these; they must be present.
REQUIRED_CONSTANTS = ("dram_bandwidth", "eta_bw", "peak_fp32", "peak_int8_dot", "eta_compute", "op_overhead", "p_cpu",
                      "p_uncore", "e_bit", "battery")

# Every constant a target may carry: its unit and the physically possible range of value, lo and hi.
# The bounds are wide (they refuse impossible values, such as negative power, not unusual devices), and a
# name outside this table is refused, so a misspelt optional constant cannot silently fall back to a default.
KNOWN_CONSTANTS: dict[str, tuple[str, float, float]] = {
    "dram_bandwidth": ("GB/s", 0.1, 10_000.0),
    "eta_bw": ("", 0.01, 1.0),
    "eta_compute": ("", 0.01, 1.0),
    "op_overhead": ("us", 0.0, 10_000.0),
    "peak_fp32": ("GMAC/s", 0.01, 1e6),
    "peak_fp16": ("GMAC/s", 0.01, 1e6),
    "peak_int8_dot": ("GMAC/s", 0.01, 1e6),
    "peak_int8_i8mm": ("GMAC/s", 0.01, 1e6),
    "p_cpu": ("W", 0.001, 500.0),
    "p_uncore": ("W", 0.0, 100.0),
    "e_bit": ("pJ/bit", 0.01, 1000.0),
    "battery": ("Wh", 0.01, 10_000.0),
    "llc_effective": ("MB", 0.0, 4096.0),
}
BUDGET_CONSTANT = ("MB", 1e-9, 1e9)  # any positive size: tests and tiny devices use small budgets


@dataclass
class Constant:
    value: float
    kind: Kind
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    source: str = ""
    note: str = ""

    def validate(self, where: str) -> None:
        lo = self.value if self.lo is None else self.lo
        hi = self.value if self.hi is None else self.hi
        if not lo <= self.value <= hi:
            raise RecipeError(f"{where}: expected lo <= value <= hi, got {lo} / {self.value} / {hi}")
        if self.kind != "ASSUMED" and not self.source:
            raise RecipeError(f"{where}: a {self.kind} value needs a 'source' (only ASSUMED values may omit it)")

    def check_physical(self, where: str, unit: str, lo_bound: float, hi_bound: float) -> None:
        """Unit as declared for this constant, and value/lo/hi inside the physically possible range."""
        if self.unit != unit:
            raise RecipeError(f"{where} key 'unit': expected {unit!r}, got {self.unit!r}")
        for key in ("value", "lo", "hi"):
            v = getattr(self, key)
            if v is not None and not lo_bound <= v <= hi_bound:
                shown = f" {unit}" if unit else ""
                raise RecipeError(f"{where} key {key!r}: expected {lo_bound:g}..{hi_bound:g}{shown}, got {v:g}{shown}")


@dataclass
class Device:
    soc: str
    reference_device: str
    cpu: str
    threads: int
    isa: list[str]
    ram_gb: float
    thread_note: str = ""
    source: str = ""

    def validate(self, where: str) -> None:
        if not 1 <= self.threads <= 1024:
            raise RecipeError(f"{where} key 'threads': expected 1..1024, got {self.threads}")
        if not 0 < self.ram_gb <= 100_000:
            raise RecipeError(f"{where} key 'ram_gb': expected a positive size in GB, got {self.ram_gb:g}")


@dataclass
class Parity:
    min_mean_cosine: float | None = None
    min_cosine: float | None = None
    max_probe_drop: float | None = None


@dataclass
class ExportRecipe:
    backend: Literal["onnxruntime", "executorch"]
    quantization: str
    fp16: bool = False
    note: str = ""
    parity: Parity = field(default_factory=Parity)


@dataclass
class Budget:
    model_mb: Constant
    memory_mb: Constant


@dataclass
class Target:
    name: str
    description: str
    device: Device
    constants: dict[str, Constant]
    budget: Budget
    export: ExportRecipe
    sources: dict[str, str] = field(default_factory=dict)
    target_version: int = TARGET_VERSION
    path: str = ""

    def validate(self, where: str) -> None:
        if self.target_version != TARGET_VERSION:
            raise RecipeError(f"{where} key 'target_version': this edgedistill reads {TARGET_VERSION}, "
                              f"got {self.target_version}")
        missing = [c for c in REQUIRED_CONSTANTS if c not in self.constants]
        if missing:
            raise RecipeError(f"{where} [constants] missing required constant {missing[0]!r}")
        unknown = sorted(set(self.constants) - set(KNOWN_CONSTANTS))
        if unknown:
            raise RecipeError(f"{where} [constants] unknown constant {unknown[0]!r} "
                              f"(allowed: {', '.join(sorted(KNOWN_CONSTANTS))})")
        for key, c in self.constants.items():
            c.check_physical(f"{where} [constants] {key}", *KNOWN_CONSTANTS[key])
        for key in ("model_mb", "memory_mb"):
            getattr(self.budget, key).check_physical(f"{where} [budget] {key}", *BUDGET_CONSTANT)
        for key, c in {**self.constants, "budget.model_mb": self.budget.model_mb,
                       "budget.memory_mb": self.budget.memory_mb}.items():
            for ref in filter(None, (s.strip() for s in c.source.split(","))):
                if ref not in self.sources:
                    raise RecipeError(f"{where} [constants] {key}: source {ref!r} is not in [sources]")

    def host_threads(self) -> int:
        """The target's thread count, capped at the cores this process may use."""
        return max(1, min(self.device.threads, len(os.sched_getaffinity(0))))

    def to_dict(self) -> dict:
        return as_dict(self)


def builtin_dir() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here / "_builtin" / "targets", here.parent / "targets"):
        if cand.is_dir():
            return cand
    raise RecipeError("built-in targets folder not found (broken installation?)")


def list_targets() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.toml"))


def resolve_targets(names: list[str], base_dir: Path, where: str) -> list[str]:
    """Check a recipe's target references when the recipe loads, before any work.

    Built-in names stay names; a target file's path is made absolute against the recipe's folder (so it
    loads from any working directory) and the file is parsed and validated now. ``where`` names the file
    and key, e.g. ``"recipe.toml: [export] key 'targets'"``.
    """
    out = []
    for name in names:
        ref = str(name)
        if ref.endswith(".toml") or os.sep in ref:
            p = Path(ref).expanduser()
            ref = str(p if p.is_absolute() else (base_dir / p).resolve())
        try:
            load_target(ref)
        except RecipeError as e:
            raise RecipeError(f"{where}: {e}") from None
        out.append(ref)
    return out


def load_target(name_or_path: str | Path) -> Target:
    """A built-in target by name, or a user's target file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        path = Path(text)
    else:
        path = builtin_dir() / f"{text}.toml"
        if not path.is_file():
            raise RecipeError(f"unknown target {text!r} (built-in: {', '.join(list_targets())}; "
                              "or give the path of a .toml target file)")
    table = load_toml(path)
    target = parse_table(Target, table, f"{path}:")
    target.path = str(path)
    return target
