"""The parity gate: an exported model must agree with the fp32 student on
held-out sentences (embedding cosine, and the probe's accuracy when labels
exist) before a bundle is written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..quality.metrics import mean_cosine, min_cosine
from .schemes import SCHEMES


class GateResult:
    """What every parity report shares: it passed when no check failed; its dict carries the verdict."""

    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return asdict(self) | {"passed": self.passed}


@dataclass
class ParityReport(GateResult):
    scheme: str
    sentences: int
    mean_cosine: float
    min_cosine: float
    max_abs_diff: float
    thresholds: dict
    probe_sentences: int = 0
    probe_accuracy_reference: float | None = None
    probe_accuracy_exported: float | None = None
    probe_drop: float | None = None
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"mean cos {self.mean_cosine:.4f}, min cos {self.min_cosine:.4f}"
        if self.probe_drop is not None:
            text += f", probe acc {self.probe_accuracy_exported:.4f} vs {self.probe_accuracy_reference:.4f}"
        return text


def thresholds_for(scheme, target) -> dict:
    t = {"min_mean_cosine": scheme.min_mean_cosine, "min_cosine": scheme.min_cosine,
         "max_probe_drop": scheme.max_probe_drop}
    if target is not None:
        for key, value in vars(target.export.parity).items():
            if value is not None:
                t[key] = value
    return t


def check_parity(reference: np.ndarray, exported: np.ndarray, scheme, target=None, probe=None,
                 probe_idx=None, probe_labels=None) -> ParityReport:
    th = thresholds_for(scheme, target)
    rep = ParityReport(scheme=scheme.name, sentences=len(reference), mean_cosine=mean_cosine(reference, exported),
                       min_cosine=min_cosine(reference, exported),
                       max_abs_diff=float(np.max(np.abs(reference - exported))), thresholds=th)
    if not np.all(np.isfinite(exported)):
        rep.failures.append("exported model produced NaN/inf")
    if rep.mean_cosine < th["min_mean_cosine"]:
        rep.failures.append(f"mean cosine {rep.mean_cosine:.4f} < {th['min_mean_cosine']}")
    if rep.min_cosine < th["min_cosine"]:
        rep.failures.append(f"min cosine {rep.min_cosine:.4f} < {th['min_cosine']}")
    if probe is not None and probe_idx is not None and len(probe_idx):
        y = np.asarray(probe_labels)
        rep.probe_sentences = len(probe_idx)
        rep.probe_accuracy_reference = probe.accuracy(reference[probe_idx], y)
        rep.probe_accuracy_exported = probe.accuracy(exported[probe_idx], y)
        rep.probe_drop = rep.probe_accuracy_reference - rep.probe_accuracy_exported
        if rep.probe_drop > th["max_probe_drop"]:
            rep.failures.append(f"probe accuracy drop {rep.probe_drop:.4f} > {th['max_probe_drop']}")
    return rep


def failure_message(rep: ParityReport, target_name: str) -> str:
    scheme = SCHEMES.get(rep.scheme)  # what to try next is the record's fallback
    nxt = scheme.fallback if scheme else None
    hint = f"; try --quant {nxt}" if nxt else ""
    return (f"parity gate failed for {rep.scheme} on target {target_name!r} ({'; '.join(rep.failures)}; "
            f"{rep.summary()} over {rep.sentences} held-out sentences); no bundle written{hint}")
