"""Quality of every benchmarked model on the held-out test split.

Each family (teacher, student) gets a logistic-regression probe fitted on its
own fp32 PyTorch embeddings of the training split (C chosen on validation).
Exported variants are scored with their family's probe, as an app would use
a head trained once on the fp32 model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import backends
from ..models.encode import batched_embed, embed_torch
from ..models.loading import load_encoder
from ..quality import batch_dependence
from ..quality.metrics import accuracy_se, mean_cosine, pairwise_spearman
from ..workspace import Workspace


def _metrics(emb: np.ndarray, teacher_test: np.ndarray, probe, test_set, spearman_n: int) -> dict:
    out: dict = {}
    if emb.shape[1] == teacher_test.shape[1]:
        out["cosine_to_teacher"] = mean_cosine(emb, teacher_test)
    # Pairwise similarities compare within each model's own space, so any width can be ranked against the teacher.
    out["spearman_vs_teacher"] = pairwise_spearman(emb, teacher_test, limit=spearman_n)
    if probe is not None:
        correct = probe.correct(emb[test_set.idx], test_set.labels)
        acc = float(correct.mean())
        out.update(probe_accuracy=acc, probe_accuracy_se=accuracy_se(acc, len(correct)), probe_test_n=len(correct),
                   _correct=correct)
    return out


def evaluate(ws: Workspace, student_dir: Path, onnx_models: dict[str, tuple[str, Path]], threads: int) -> dict:
    """``onnx_models``: name -> (family, path). Returns name -> metrics (incl. the two PyTorch models)."""
    r = ws.recipe
    t = r.teacher
    test_texts = ws.texts("test")
    teacher_test = ws.teacher_embeddings("test")
    te = ws.probe_set("test")
    probes = {"teacher": None, "student": None}
    model, tok = load_encoder(student_dir)
    s_test = embed_torch(model, tok, test_texts, t.max_length, t.pooling, t.normalize, desc="student (test)")
    if len(te.idx) >= 5:
        probes["teacher"] = ws.fit_probe(lambda split, pos: ws.teacher_embeddings(split)[pos])
        probes["student"] = ws.fit_probe(ws.embed_with(model, tok, "student, probe"))

    n = r.bench.spearman_sentences
    results = {"teacher-pytorch": _metrics(teacher_test, teacher_test, probes["teacher"], te, n),
               "student-pytorch": _metrics(s_test, teacher_test, probes["student"], te, n)}
    tokenizers = {"teacher": ws.teacher[1], "student": tok}
    for name, (family, path) in onnx_models.items():
        embedder = backends.open_file(path, threads).output("sentence_embedding")
        emb = batched_embed(embedder, tokenizers[family], test_texts, t.max_length, desc=f"{name} (test)")
        results[name] = _metrics(emb, teacher_test, probes[family], te, n)
        batch = batch_dependence.mixed_lengths(tokenizers[family], test_texts, t.max_length)
        results[name]["batch_dependence"] = batch_dependence.max_abs_diff(embedder, tokenizers[family], batch,
                                                                          t.max_length)
    for family, probe in probes.items():
        if probe is not None:
            results[f"{family}-pytorch"]["probe_C"] = probe.C
            results[f"{family}-pytorch"]["probe_val_accuracy"] = probe.val_accuracy
    results["_test_sentences"] = len(test_texts)
    return results


def vocab_extras(ws: Workspace) -> dict:
    """The bench report's ``vocab`` block: the student's kept rows and out-of-vocabulary rates on the test split
    (``{"mode": "full"}`` for a student with its source's whole vocabulary)."""
    from ..models.vocab_student import held_out_report

    return {"vocab": {**held_out_report(ws, ws.student_dir, ws.texts("test")), "held_out": "test split"}}
