"""Device latency and energy per inference or per decoded token: the ``modelled-v2`` method.

Nothing here is measured on the device, and nothing here reads the host: the figures come from
what the model *is* (a :class:`~.workload.Workload`, counted from its shape and scheme) and what the
device *is* (the target file's constants), so every host computes the same device figure.

* compute    t_comp = sum_k MACs_k / (eta_c * R_k) + elementwise / (eta_c * R_fp32)
             (R_k: the target's peak for arithmetic class k over its threads; eta_c: the fraction of
             peak that mobile GEMM kernels reach)
* memory     t_mem  = B_dram / (eta_bw * BW),  B_dram = weights (when they do not fit the effective
             last-level cache, or cold) + KV cache read per token + 2 x activations larger than the cache
* overhead   t_ops  = ops * t_op  (runtime dispatch per operator launch; does not overlap the rest)
* latency    t_dev  = max(t_comp, t_mem) + t_ops
             (LLM decode is the larger of compute and the traffic of weights + KV cache per token)
* energy     E = t_dev * (P_cpu + P_uncore) + 8 * e_bit * B_dram

Bands: ``lo`` pairs every optimistic end (highest eta_c, peak, eta_bw and bandwidth, lowest t_op,
power and e_bit), ``hi`` every pessimistic one, so energy combines the latency band with the power
band. ``dominant`` names the term that sets each band's latency.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..fileutil import sha256_file

ENERGY_KIND = "modelled-v2"
BANDS = ("lo", "central", "hi")
# Rates and efficiencies: a higher value is the optimistic end; costs (power, energy, overhead): a lower one.
_RATE = {"lo": "hi", "central": "central", "hi": "lo"}


def sig2(x: float | None) -> str:
    """Two significant figures: what a modelled number deserves (devices-energy.md §7.7)."""
    if x is None:
        return "–"
    if x == 0 or not math.isfinite(x):
        return str(x)
    digits = 1 - math.floor(math.log10(abs(x)))
    v = round(x, digits)
    return f"{int(v):,}" if digits <= 0 else f"{v:.{digits}f}"


def _band(c, band: str) -> float:
    if band == "lo" and c.lo is not None:
        return c.lo
    if band == "hi" and c.hi is not None:
        return c.hi
    return c.value


# Share of a group-wise int4 GEMM kernel's SIMD instructions that are multiply-accumulates (``int8-grouped``,
# e.g. 8da4w with groups of 32). Per 32-deep block the kernel also unpacks the int4 weights to int8
# (shl/and), clears its int32 accumulators, converts them to float and adds them times the block's scale
# (scvtf + fmla); these share the SIMD pipes with the MACs. Counted from the kernels' source (DERIVED):
#   i8mm: KleidiAI matmul_clamp_f32_qai8dxp4x8_qsi4c32p4x8_16x4x32_neon_i8mm (the kernel ExecuTorch's XNNPACK
#         uses with KleidiAI), one block of a 16x4 tile: 64 SMMLA among 138 vector ops (9 unpack, 16 clears,
#         16 uzp, 16 scvtf, 16 fmla, 1 shll);
#   dotprod: XNNPACK qd8-f32-qb4w-gemm 4x16c4 neondot: 128 SDOT among 208 (32 unpack, 16 clears, 16 scvtf, 16 fmla).
# Cross-check against a published figure that is not an anchor: XNNPACK's own i8mm kernel (4x16c8) counts
# 64 of 164, so KleidiAI should be ~(64/138)/(64/164) = 1.19x faster at prefill; Arm and Meta report ">20%"
# (pytorch.org blog 2024-10-28, Llama 3.2 1B on a Galaxy S24+).
GROUPED_MAC_SHARE = {"peak_int8_i8mm": 64 / 138, "peak_int8_dot": 128 / 208}


def _scaled(c, share: float):
    """A peak constant times a kernel's MAC share (lo/central/hi scaled alike)."""
    return replace(c, value=c.value * share, lo=None if c.lo is None else c.lo * share,
                   hi=None if c.hi is None else c.hi * share)


def device_peaks(target) -> dict:
    """Device peak per arithmetic class: (constant, name). fp16 falls back to fp32 without FP16 arithmetic;
    ``int8-grouped`` is the int8 peak times the group-wise kernel's MAC share."""
    consts, isa = target.constants, target.device.isa
    int8_key = "peak_int8_i8mm" if "i8mm" in isa and "peak_int8_i8mm" in consts else "peak_int8_dot"
    fp16_key = "peak_fp16" if "fp16" in isa and "peak_fp16" in consts else "peak_fp32"
    share = GROUPED_MAC_SHARE.get(int8_key, GROUPED_MAC_SHARE["peak_int8_dot"])
    return {"fp32": (consts["peak_fp32"], "peak_fp32"), "fp16": (consts[fp16_key], fp16_key),
            "int8": (consts[int8_key], int8_key),
            "int8-grouped": (_scaled(consts[int8_key], share), f"{int8_key} x {share:.2f} (group-wise int4 kernel)")}


def constants_version(target) -> str:
    return f"{target.name}@{sha256_file(target.path)[:12]}" if target.path else target.name


def dram_bytes(target, wl, cold: bool = False) -> float:
    cache_c = target.constants.get("llc_effective")
    cache = cache_c.value * 1e6 if cache_c else 0.0
    b = wl.weight_bytes if (cold or wl.weight_bytes > cache) else 0.0
    b += wl.kv_bytes if (cold or wl.kv_bytes > cache) else 0.0
    return b + 2 * sum(a for a in wl.activations.values() if a > cache)


def model_workload(target, wl, cold: bool = False) -> dict:
    """Modelled device latency and energy of ``wl`` (a :class:`~.workload.Workload`) on ``target``."""
    consts = target.constants
    peaks = device_peaks(target)
    b_dram = dram_bytes(target, wl, cold)
    out: dict = {"energy_kind": ENERGY_KIND, "constants_version": constants_version(target), "dram_bytes": b_dram,
                 "ops": wl.ops, "t_comp_ms": {}, "t_mem_ms": {}, "t_ops_ms": {}, "t_dev_ms": {}, "energy_mj": {},
                 "inferences_per_battery_percent": {}, "bound": {}, "dominant": {}}
    battery_j = consts["battery"].value * 3600.0
    for band in BANDS:
        rate = _RATE[band]
        eta_c = _band(consts["eta_compute"], rate)
        t_comp = sum(m / (eta_c * _band(peaks[k][0], rate) * 1e9) for k, m in wl.macs.items() if m)
        t_comp += wl.elementwise / (eta_c * _band(peaks["fp32"][0], rate) * 1e9)
        bw = _band(consts["dram_bandwidth"], rate) * _band(consts["eta_bw"], rate) * 1e9
        t_mem = b_dram / bw
        t_ops = wl.ops * _band(consts["op_overhead"], band) * 1e-6
        t_dev = max(t_comp, t_mem) + t_ops
        power = _band(consts["p_cpu"], band) + _band(consts["p_uncore"], band)
        energy = t_dev * power + 8 * _band(consts["e_bit"], band) * 1e-12 * b_dram
        out["t_comp_ms"][band], out["t_mem_ms"][band] = t_comp * 1e3, t_mem * 1e3
        out["t_ops_ms"][band], out["t_dev_ms"][band] = t_ops * 1e3, t_dev * 1e3
        out["energy_mj"][band] = energy * 1e3
        out["inferences_per_battery_percent"][band] = 0.01 * battery_j / energy
        out["bound"][band] = "memory" if t_mem > t_comp else "compute"
        main = ("eta_bw, dram_bandwidth" if t_mem > t_comp else
                f"eta_compute, {', '.join(sorted({peaks[k][1] for k, m in wl.macs.items() if m}))}")
        out["dominant"][band] = {"latency": main if t_ops < max(t_comp, t_mem) else "op_overhead",
                                 "energy": "p_cpu" if t_dev * power > 8 * _band(consts["e_bit"], band) * 1e-12 * b_dram
                                 else "e_bit"}
    # A lower energy means more inferences: the battery figure's lo comes from energy's hi.
    ipb = out["inferences_per_battery_percent"]
    ipb["lo"], ipb["hi"] = ipb["hi"], ipb["lo"]
    out["device_peaks"] = {k: {"gmacs": c.value, "constant": name} for k, (c, name) in peaks.items()}
    out["constants"] = {name: {"value": c.value, "lo": c.lo, "hi": c.hi, "unit": c.unit, "kind": c.kind,
                               "source": c.source}
                        for name, c in consts.items()
                        if name in ("p_cpu", "p_uncore", "e_bit", "dram_bandwidth", "eta_bw", "eta_compute",
                                    "op_overhead", "battery", "llc_effective")
                        or name in {n for _, n in peaks.values()}}
    if wl.macs.get("int8-grouped"):
        out["grouped_mac_share"] = GROUPED_MAC_SHARE
    out["workload"] = wl.to_dict()
    return out


def budget_check(target, weight_bytes: float, activations: dict[str, float]) -> dict:
    """Does the model fit the target's size and memory budgets? (Modelled: weights + one layer's activations.)"""
    size_mb = weight_bytes / 1e6
    mem_mb = (weight_bytes + sum(activations.values())) / 1e6
    return {"size_mb": size_mb, "size_budget_mb": target.budget.model_mb.value,
            "fits_size_budget": size_mb <= target.budget.model_mb.value,
            "memory_mb_modelled": mem_mb, "memory_budget_mb": target.budget.memory_mb.value,
            "fits_memory_budget": mem_mb <= target.budget.memory_mb.value}
