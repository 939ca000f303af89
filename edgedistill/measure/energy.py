"""Device latency and energy per inference: the ``modelled-v1`` method.

Nothing here is measured on the device. From ../shared/research/devices-energy.md §7.2-7.3, with
the matrix products and everything else scaled separately:

* host GEMM time   t_gemm,host = sum_k MACs_k / R_host,k  (R_host,k: measured single-thread GEMM
                   throughput of class k, fp32 or int8, on this host; see calibrate.py)
* host other time  t_other,host = max(0, t_cpu,host - t_gemm,host)  (quantise/dequantise, softmax,
                   LayerNorm, GELU, dispatch: measured CPU time minus the GEMM share)
* device compute   t_comp = sum_k MACs_k / R_dev,k + t_other,host * S / n_dev
                   (R_dev,k: the target's peak for class k over its n_dev threads; S = host fp32
                   rate per thread / device fp32 rate per thread, the single-thread speed ratio)
* memory floor     t_mem = B_dram / (eta_bw * BW),  B_dram = weights (unless they fit the effective
                   last-level cache) + 2 x activations larger than that cache
* latency          t_dev = max(t_comp, t_mem)
* energy           E = t_dev * (P_cpu + P_uncore) + 8 * e_bit * B_dram

Scaling GEMMs and the rest separately matters on hosts whose int8 peak is far above their fp32
peak (AMX, VNNI): a single efficiency factor would charge the device's int8 rate for work that
is not int8 arithmetic at all.

Every constant comes from the target file with its lo/central/hi; ``lo`` pairs
every optimistic end (fast memory, low power), ``hi`` every pessimistic one.
Student/teacher *ratios* are robust because power constants largely cancel;
absolute joules are uncertain by about x1.5-2 and always carry their range.
"""

from __future__ import annotations

import math

from ..fileutil import sha256_file

ENERGY_KIND = "modelled-v1"
BANDS = ("lo", "central", "hi")


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


def device_peaks(target) -> dict:
    """Device peak GMAC/s per compute class, and which constant each came from."""
    consts = target.constants
    int8_key = "peak_int8_i8mm" if "i8mm" in target.device.isa and "peak_int8_i8mm" in consts else "peak_int8_dot"
    return {"fp32": (consts["peak_fp32"].value, "peak_fp32"), "int8": (consts[int8_key].value, int8_key)}


def constants_version(target) -> str:
    return f"{target.name}@{sha256_file(target.path)[:12]}" if target.path else target.name


def model_inference(target, macs: dict[str, float], host_cpu_s: float, host_peak: dict[str, float],
                    weight_bytes: float, activations: dict[str, float], cold: bool = False) -> dict:
    """Modelled device latency and energy of one inference on ``target`` (see module docstring)."""
    if host_cpu_s <= 0:
        raise ValueError("host CPU time must be positive")
    consts = target.constants
    dev = device_peaks(target)
    t_gemm_host = sum(m / (host_peak[k] * 1e9) for k, m in macs.items() if m)
    t_other_host = max(0.0, host_cpu_s - t_gemm_host)
    n_dev = target.device.threads
    speed_ratio = host_peak["fp32"] / (dev["fp32"][0] / n_dev)
    t_gemm_dev = sum(m / (dev[k][0] * 1e9) for k, m in macs.items() if m)
    t_other_dev = t_other_host * speed_ratio / n_dev
    t_comp = t_gemm_dev + t_other_dev
    cache_c = consts.get("llc_effective")
    cache_bytes = cache_c.value * 1e6 if cache_c else 0.0
    b_dram = (weight_bytes if (cold or weight_bytes > cache_bytes) else 0.0)
    b_dram += 2 * sum(a for a in activations.values() if a > cache_bytes)
    out: dict = {"energy_kind": ENERGY_KIND, "constants_version": constants_version(target),
                 "host_gemm_ms": t_gemm_host * 1e3, "host_other_ms": t_other_host * 1e3,
                 "single_thread_speed_ratio": speed_ratio, "t_gemm_ms": t_gemm_dev * 1e3,
                 "t_other_ms": t_other_dev * 1e3, "t_comp_ms": t_comp * 1e3, "dram_bytes": b_dram,
                 "t_dev_ms": {}, "t_mem_ms": {}, "energy_mj": {}, "inferences_per_battery_percent": {},
                 "bound": {}}
    battery_j = consts["battery"].value * 3600.0
    for band in BANDS:
        # Energy "lo" is the optimistic end: the fastest memory (highest bandwidth) and lowest power.
        bw = _band(consts["dram_bandwidth"], {"lo": "hi", "hi": "lo"}.get(band, band)) * 1e9
        eta_bw = consts["eta_bw"].value if "eta_bw" in consts else 0.6
        t_mem = b_dram / (eta_bw * bw)
        t_dev = max(t_comp, t_mem)
        power = _band(consts["p_cpu"], band) + _band(consts["p_uncore"], band)
        energy = t_dev * power + 8 * _band(consts["e_bit"], band) * 1e-12 * b_dram
        out["t_mem_ms"][band] = t_mem * 1e3
        out["t_dev_ms"][band] = t_dev * 1e3
        out["energy_mj"][band] = energy * 1e3
        out["inferences_per_battery_percent"][band] = 0.01 * battery_j / energy
        out["bound"][band] = "memory" if t_mem > t_comp else "compute"
    # A lower energy means more inferences: the battery figure's lo comes from energy's hi.
    ipb = out["inferences_per_battery_percent"]
    ipb["lo"], ipb["hi"] = ipb["hi"], ipb["lo"]
    out["device_peaks"] = {k: {"gmacs": v, "constant": name} for k, (v, name) in dev.items()}
    out["constants"] = {name: {"value": c.value, "lo": c.lo, "hi": c.hi, "unit": c.unit, "kind": c.kind,
                               "source": c.source}
                        for name, c in consts.items()
                        if name in ("p_cpu", "p_uncore", "e_bit", "dram_bandwidth", "eta_bw", "battery",
                                    "llc_effective", dev["fp32"][1], dev["int8"][1])}
    return out


def budget_check(target, weight_bytes: float, activations: dict[str, float]) -> dict:
    """Does the model fit the target's size and memory budgets? (Modelled: weights + one layer's activations.)"""
    size_mb = weight_bytes / 1e6
    mem_mb = (weight_bytes + sum(activations.values())) / 1e6
    return {"size_mb": size_mb, "size_budget_mb": target.budget.model_mb.value,
            "fits_size_budget": size_mb <= target.budget.model_mb.value,
            "memory_mb_modelled": mem_mb, "memory_budget_mb": target.budget.memory_mb.value,
            "fits_memory_budget": mem_mb <= target.budget.memory_mb.value}
