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

# The device-model (bench) issue builds on these; they must be present.
REQUIRED_CONSTANTS = ("dram_bandwidth", "peak_fp32", "peak_int8_dot", "p_cpu", "p_uncore", "e_bit", "battery")


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
        if self.threads < 1:
            raise RecipeError(f"{where} key 'threads': expected >= 1, got {self.threads}")


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
