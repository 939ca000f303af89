"""Attach parameter/MAC counts and modelled device latency/energy to benchmarked models."""

from __future__ import annotations

import os

from ..errors import RecipeError
from .energy import ENERGY_KIND, budget_check, model_workload
from .macs import EncoderShape, count
from .workload import encoder_workload, precision_for_scheme

RAM_FRACTION = 0.8
"""A batch whose estimated peak exceeds this share of free RAM is refused before any process starts."""


def preflight(shapes: dict[str, EncoderShape], batch: int, seq: int, where: str = "[bench]") -> None:
    """Refuse shapes the models cannot take, or that would exhaust this host's memory."""
    for family, shape in shapes.items():
        if seq > shape.positions:
            raise RecipeError(f"{where} key 'seq_length': {seq} is longer than the {family}'s maximum of "
                              f"{shape.positions} positions")
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    for family, shape in shapes.items():
        acts = count(shape, batch, seq)["activation_bytes"]
        # Eager PyTorch keeps a few per-layer activations alive at once; 4x one
        # layer's activations plus fp32 weights is generous yet still catches absurd batches.
        need = 4 * sum(acts.values()) + 4 * count(shape, 1, 1)["params"]["total"]
        if need > RAM_FRACTION * free:
            raise RecipeError(f"{where} key 'batch_size': batch {batch} x {seq} tokens needs about "
                              f"{need / 2**30:.1f} GiB for the {family}, more than the {free / 2**30:.1f} GiB free; "
                              "use a smaller batch_size or seq_length")


NOTE = ("device latency and energy are modelled, never measured (modelled-v2: from the model's counted MACs per "
        "arithmetic class, element-wise work, operator launches and bytes of weights, activations and KV cache, and "
        "the target's peak rates, achievable bandwidth, per-operator overhead, power and DRAM energy constants with "
        "lo/central/hi; the host is used only for host latency, so every host computes the same device figure)")


def annotate(entries: list[dict], shapes: dict[str, EncoderShape], targets: list, batch: int, seq: int) -> None:
    """Add ``params``, ``macs`` and per-target ``energy`` (modelled-v2) to each model entry in place.

    ``shapes`` is keyed by model name or, failing that, by role (teacher / student). Nothing here
    reads a host measurement: the device figures depend on the model and the target only.
    """
    for m in entries:
        shape = shapes.get(m["name"]) or shapes.get(m["role"])
        if shape is None:
            m["energy_note"] = "not modelled: the encoder shape could not be read from this model"
            continue
        c = count(shape, batch, seq, m["quantization"])
        m["params"] = c["params"]
        m["macs"] = c["macs"]
        m["macs_by_layer_class"] = c["macs_by_layer_class"]
        wl = encoder_workload(shape, batch, seq, precision_for_scheme(m["quantization"]))
        m["energy"] = {}
        for t in targets:
            e = model_workload(t, wl)
            e.update(budget_check(t, m["size_bytes"], wl.activations))
            m["energy"][t.name] = e


def energy_ratios(teacher: dict, student: dict) -> dict | None:
    """Teacher / student modelled energy per target, with the band spanned by lo/central/hi."""
    if "energy" not in teacher or "energy" not in student:
        return None
    out = {}
    for name, te in teacher["energy"].items():
        se = student["energy"].get(name)
        if se is None:
            continue
        r = [te["energy_mj"][b] / se["energy_mj"][b] for b in ("lo", "central", "hi")]
        out[name] = {"lo": min(r), "central": r[1], "hi": max(r), "energy_kind": ENERGY_KIND}
    return out
