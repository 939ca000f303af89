"""Bench for the classification task: accuracy of every model on the labelled test split, and a bundle's
early exits scored per exit threshold (see :mod:`edgedistill.tasks.classification`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .classification import logits_runner, runner_logits, torch_logits


def evaluate(ws, student_dir: Path, exported: dict[str, tuple[str, Path]], threads: int) -> dict:
    """Test-split accuracy of the PyTorch teacher and student and of each exported model (name ->
    (family, path)), and each model's top-1 agreement with the teacher; same layout as
    :func:`edgedistill.tasks.embedding_bench.evaluate` (``_correct`` per model for paired errors)."""
    from transformers import AutoConfig

    from ..models.classifier import config_labels, is_classifier_folder, labelled_split
    from ..models.loading import load_tokenizer
    from ..quality import batch_dependence
    from ..quality.metrics import accuracy_se

    r = ws.recipe
    cfg = AutoConfig.from_pretrained(student_dir, local_files_only=True)
    label2id = {v: k for k, v in config_labels(cfg).items()}
    texts, labels = labelled_split(ws, "test", label2id)
    logits: dict[str, np.ndarray] = {}
    dependence: dict[str, float | None] = {}
    if is_classifier_folder(ws.teacher_ref.folder):
        logits["teacher-pytorch"] = torch_logits(ws.teacher_ref.folder, texts, r.teacher.max_length)
    logits["student-pytorch"] = torch_logits(student_dir, texts, r.teacher.max_length)
    toks = {"teacher": ws.teacher[1], "student": load_tokenizer(student_dir)}
    for name, (family, path) in exported.items():
        if family == "teacher" and "teacher-pytorch" not in logits:
            continue  # an encoder teacher (cross-task transfer) has no labels to predict
        run = logits_runner(Path(path), threads)
        logits[name] = runner_logits(run, toks[family], texts, r.teacher.max_length, desc=f"{name} (test)")
        batch = batch_dependence.mixed_lengths(toks[family], texts, r.teacher.max_length)
        dependence[name] = batch_dependence.max_abs_diff(run, toks[family], batch, r.teacher.max_length)
    teacher_top = logits["teacher-pytorch"].argmax(1) if "teacher-pytorch" in logits else None
    results: dict = {}
    for name, z in logits.items():
        correct = z.argmax(1) == labels
        acc = float(correct.mean()) if len(labels) else 0.0
        q = {"accuracy": acc, "accuracy_se": accuracy_se(acc, len(correct)), "test_n": int(len(correct)),
             "_correct": correct}
        if teacher_top is not None:
            q["agreement_with_teacher"] = float((z.argmax(1) == teacher_top).mean())
        if name in dependence:
            q["batch_dependence"] = dependence[name]
        results[name] = q
    results.setdefault("teacher-pytorch", {})
    results["_test_sentences"] = len(texts)
    return results


EXIT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def exit_table(bundle: Path, texts: list[str], labels: np.ndarray, p50_ms: float | None = None,
               thresholds=EXIT_THRESHOLDS, timed_texts: int = 200) -> list[dict]:
    """Accuracy, the share of texts each exit answers, and the mean latency of one text, per exit
    threshold, for a bundle with early exits (its own runtime, 1 thread, on the labelled test texts);
    the first row is the final head alone.

    With exit segments (ONNX bundles: ``exit_{k}.onnx`` ... ``exit_rest.onnx``) the latency is measured per
    text in this process over the first ``timed_texts`` texts; a bundle whose one graph computes every exit
    has the bundle's latency (``p50_ms``) at every threshold."""
    import time

    from ..runtime import Bundle

    b = Bundle.open(bundle, threads=1)
    ids = {name: i for i, name in enumerate(b.labels)}
    cascade = bool(b._exit_runs)
    timed = texts[:timed_texts]
    if cascade and timed:
        b.predict(timed[:4])  # warm-up
    rows = []
    for th in (None, *thresholds):
        res = b.predict(texts, exit_threshold=th)
        used = [r.get("exit", "final") for r in res]
        acc = float(np.mean([ids.get(r["label"], -1) == y for r, y in zip(res, labels, strict=True)])) if res else 0.0
        row = {"threshold": th, "accuracy": acc, "exit_share": {str(e): used.count(e) / len(used)
                                                                for e in dict.fromkeys(used)}}
        if cascade and timed:
            t0 = time.perf_counter()
            for t in timed:
                b.predict([t], exit_threshold=th)
            row["mean_ms"] = (time.perf_counter() - t0) * 1000 / len(timed)
        else:
            row["p50_ms"] = p50_ms
        rows.append(row)
    if cascade and timed:
        for row in rows:
            row["speedup"] = rows[0]["mean_ms"] / row["mean_ms"] if row["mean_ms"] else None
    return rows
