"""The classification task's parity gate: exported logits against the fp32 PyTorch student.

Top-1 agreement on the sentences the fp32 student decides by a clear margin, and the accuracy
change on the labelled ones, both bounded by the scheme's (or the target's) accuracy tolerance;
the largest logit difference is reported, not gated (logit scales differ between models).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..export.parity import GateResult
from .classification import DECIDED_MARGIN, _softmax, torch_logits


def thresholds_for(scheme, target=None) -> dict:
    """Top-1 agreement with the fp32 student and accuracy drop allowed for ``scheme``.

    Both follow the scheme's own accuracy tolerance (``max_probe_drop``, the drop a scheme is allowed
    on a downstream task): a classifier may flip at most twice that share of its predictions."""
    drop = scheme.max_probe_drop
    if target is not None and target.export.parity.max_probe_drop is not None:
        drop = target.export.parity.max_probe_drop
    return {"min_top1_agreement": round(1.0 - 2.0 * drop, 6), "max_accuracy_drop": drop}


@dataclass
class ClsParityReport(GateResult):
    scheme: str
    sentences: int
    top1_agreement: float
    max_abs_diff: float
    """Largest logit difference (reported; logit scales differ between models, so it is not gated)."""
    thresholds: dict
    labelled_sentences: int = 0
    accuracy_reference: float | None = None
    accuracy_exported: float | None = None
    accuracy_drop: float | None = None
    decided_sentences: int = 0
    """Parity sentences the fp32 student decides by a probability margin >= ``DECIDED_MARGIN``."""
    top1_agreement_decided: float | None = None
    accuracy_drop_decided: float | None = None
    """The accuracy drop from answers changed on decided sentences only (what the gate holds)."""
    failures: list[str] = field(default_factory=list)
    metric: str = "classification"

    def summary(self) -> str:
        text = f"top-1 agreement {self.top1_agreement:.4f}, logits max abs diff {self.max_abs_diff:.3g}"
        if self.accuracy_drop is not None:
            text += f", accuracy {self.accuracy_exported:.4f} vs {self.accuracy_reference:.4f}"
        return text


def check_parity(reference: np.ndarray, exported: np.ndarray, scheme, target=None, rows=None,
                 labels=None) -> ClsParityReport:
    """``reference``/``exported``: logits of the same sentences; ``rows``/``labels``: the labelled ones."""
    th = thresholds_for(scheme, target)
    same = reference.argmax(1) == exported.argmax(1)
    agree = float(same.mean()) if len(reference) else 0.0
    # Sentences the fp32 student decides by a clear margin: a near-tie flips under any rounding and
    # says nothing about the export, so the gate counts agreement on the decided ones.
    p = _softmax(reference)
    top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.concatenate([np.zeros_like(p), p], axis=1)
    decided = (top2[:, 1] - top2[:, 0]) >= DECIDED_MARGIN
    rep = ClsParityReport(scheme=scheme.name, sentences=len(reference), top1_agreement=agree,
                          max_abs_diff=float(np.max(np.abs(reference - exported))) if len(reference) else 0.0,
                          thresholds=th, decided_sentences=int(decided.sum()),
                          top1_agreement_decided=float(same[decided].mean()) if decided.any() else None)
    if not np.all(np.isfinite(exported)):
        rep.failures.append("exported model produced NaN/inf")
    if rep.top1_agreement_decided is not None and rep.top1_agreement_decided < th["min_top1_agreement"]:
        rep.failures.append(f"top-1 agreement with the fp32 student {rep.top1_agreement_decided:.4f} < "
                            f"{th['min_top1_agreement']} on the {rep.decided_sentences} sentences it decides by a "
                            f"probability margin >= {DECIDED_MARGIN}")
    if rows is not None and len(rows):
        y = np.asarray(labels)
        rep.labelled_sentences = len(rows)
        rep.accuracy_reference = float((reference[rows].argmax(1) == y).mean())
        rep.accuracy_exported = float((exported[rows].argmax(1) == y).mean())
        rep.accuracy_drop = rep.accuracy_reference - rep.accuracy_exported
        # Gated like the agreement: answers that changed on near-ties do not count (they are reported
        # in accuracy_drop), and one sentence is the resolution of the measurement (with 40 labelled
        # sentences a single changed answer is 2.5 points).
        keep = decided[rows]
        changed = (reference[rows].argmax(1) == y).astype(int) - (exported[rows].argmax(1) == y).astype(int)
        rep.accuracy_drop_decided = float(changed[keep].sum() / len(rows))
        allowed = max(th["max_accuracy_drop"], 1.0 / len(rows) + 1e-9)
        if rep.accuracy_drop_decided > allowed:
            rep.failures.append(f"accuracy drop {rep.accuracy_drop_decided:.4f} > {allowed:.4f} (answers changed on "
                                "sentences the fp32 student decides)")
    return rep


def reference(ws, student_dir: Path):
    """(tokenizer, parity texts, fp32 logits, labelled rows among them, their class ids)."""
    from ..models.classifier import config_labels, labelled_split
    from ..models.loading import load_tokenizer

    r = ws.recipe
    pos = ws.sample("test", r.export.parity_sentences)
    test_texts = ws.texts("test")
    texts = [test_texts[i] for i in pos]
    ref = torch_logits(student_dir, texts, r.teacher.max_length)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(student_dir, local_files_only=True)
    label2id = {v: k for k, v in config_labels(cfg).items()}
    te = ws.probe_set("test")
    _, ids = labelled_split(ws, "test", label2id)
    where = {int(p): row for row, p in enumerate(pos)}
    keep = [(where[int(i)], y) for i, y in zip(te.idx, ids, strict=True) if int(i) in where]
    rows = np.array([k for k, _ in keep], dtype=np.int64)
    labels = np.array([y for _, y in keep], dtype=np.int64)
    return load_tokenizer(student_dir), texts, ref, rows, labels
