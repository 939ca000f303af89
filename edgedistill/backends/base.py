"""What every backend returns: a :class:`Runner`, and the shared install check.

Torch-free: numpy and the standard library only.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError

Feed = dict[str, np.ndarray]


@dataclass
class Runner:
    """An opened model: ``run(feed) -> {output name: array}``.

    The same object serves the app runtime, the bench worker and the export
    parity check, so what is timed and scored is what ships.
    """

    backend: str
    run: Callable[[Feed], dict[str, np.ndarray]]
    input_names: list[str]
    output_names: list[str]
    memory: Callable[[], dict] = field(default=lambda: {})
    """The model's own memory as its runtime reports it (call it after timing: it may read the file again)."""

    def __call__(self, feed: Feed) -> dict[str, np.ndarray]:
        return self.run(feed)

    def output(self, name: str) -> Callable[[dict], np.ndarray]:
        """``feats -> one output``; accepts tokenizer output (numpy or torch tensors)."""
        def one(feats) -> np.ndarray:
            return self.run(as_numpy(feats))[name]

        return one


def as_numpy(feats) -> Feed:
    """Tokenizer features (numpy, lists or torch tensors) as int64 numpy arrays."""
    out = {}
    for k, v in dict(feats).items():
        a = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        out[k] = a.astype(np.int64, copy=False) if np.issubdtype(a.dtype, np.integer) else a
    return out


def installed(name: str) -> bool:
    """Whether ``import name`` can work, without importing it (a None entry in sys.modules blocks an import)."""
    if name in sys.modules and sys.modules[name] is None:
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a __spec__
        return name in sys.modules


def require_packages(packages: tuple[str, ...], what: str, extra: str, note: str = "", hint: str = "") -> None:
    """The one "needs package X; pip install 'edgedistill[extra]'" error of every backend."""
    missing = [p for p in packages if not installed(p)]
    if missing:
        raise ModelError(f"{what} needs the {missing[0]} package{note}: pip install 'edgedistill[{extra}]'"
                         + (f"; {hint}" if hint else ""))
