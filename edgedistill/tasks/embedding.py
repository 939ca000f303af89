"""The embedding task: sentence encoders whose pooled output is the product.

What it adds to each stage:

* distill: the student learns the teacher's pooled embedding and, through the layer map, its block
  states (``strategy = "embedding"``; :func:`edgedistill.distill.stage.run_embedding`);
* export: a graph from token ids to ``last_hidden_state`` and ``sentence_embedding`` (pooled,
  optionally normalised);
* parity: exported embeddings against the fp32 PyTorch student on held-out sentences (mean and
  minimum cosine) and, where the data has labels, the accuracy change of a probe fitted on the
  student's own embeddings (:func:`edgedistill.export.parity.check_parity`);
* bench: probe accuracy, cosine to the teacher and pairwise-similarity Spearman of every model;
* runtime: ``Bundle.embed`` returns one vector per text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..distill.options import NoOptions
from . import EMBEDDING, Task, register_task

PROBE_TRAIN_LIMIT = 4000
"""Training sentences the parity probe is fitted on."""


def reference(ws, student_dir: Path):
    """fp32 student embeddings of the parity sentences (a fixed sample of the test split), and a
    probe fitted on the student's own embeddings of training sentences:
    ``(tokenizer, texts, embeddings, probe, probe rows, probe labels)``."""
    from ..models.encode import embed_torch
    from ..models.loading import load_encoder

    r = ws.recipe
    model, tok = load_encoder(student_dir)
    pos = ws.sample("test", r.export.parity_sentences)
    test_texts = ws.texts("test")
    texts = [test_texts[i] for i in pos]
    emb = embed_torch(model, tok, texts, r.teacher.max_length, r.teacher.pooling, r.teacher.normalize,
                      desc="fp32 student (parity)")
    te = ws.probe_set("test")
    where = {int(p): row for row, p in enumerate(pos)}
    rows = np.array([where[int(i)] for i in te.idx if int(i) in where], dtype=np.int64)
    labels = np.array([lab for i, lab in zip(te.idx, te.labels, strict=True) if int(i) in where], dtype=np.int64)
    probe = ws.fit_probe(ws.embed_with(model, tok, "fp32 student, parity probe"),
                         limit=PROBE_TRAIN_LIMIT) if len(rows) else None
    return tok, texts, emb, probe, rows, labels


class EmbeddingExporter:
    def __init__(self, ws, student_dir: Path):
        self.recipe = ws.recipe
        self.tok, self.texts, self.ref, self.probe, self.rows, self.labels = reference(ws, student_dir)
        from ..models.vocab_student import held_out_report

        self.vocab = held_out_report(ws, student_dir, self.texts)
        """Kept rows and out-of-vocabulary rates on the parity sentences (held-out test text)."""

    def prepare(self, onnx_schemes: list[str]) -> None:
        return None  # an encoder ships its one graph

    def check(self, model_path: Path, scheme, target):
        from .. import backends
        from ..export.parity import check_parity
        from ..models.encode import batched_embed

        embedder = backends.get(scheme.backend).open(model_path, target.host_threads()).output("sentence_embedding")
        emb = batched_embed(embedder, self.tok, self.texts, self.recipe.teacher.max_length,
                            desc=f"parity {scheme.name}")
        return check_parity(self.ref, emb, scheme, target, self.probe, self.rows, self.labels)

    def manifest_fields(self, scheme, model_path: Path, target, pte: bool) -> tuple[dict, dict]:
        t = self.recipe.teacher
        return {
            "task": "sentence-embedding",
            "outputs": [{"name": "last_hidden_state", "dtype": "float32", "shape": ["batch", "sequence", "hidden"]},
                        {"name": "sentence_embedding", "dtype": "float32", "shape": ["batch", "hidden"]}],
            "hidden_size": int(self.ref.shape[1]),
            "labels": None,
            "pooling": t.pooling,
            "normalize": t.normalize,
            "vocab": self.vocab,
        }, {}


def _export_graph(model_dir: Path, dest: Path, r) -> dict:
    from ..export.onnx import export_onnx

    return export_onnx(model_dir, dest, r.teacher.pooling, r.teacher.normalize, r.teacher.max_length, r.export.opset)


def _et_prepare(model_dir: Path, opts):
    from ..export.executorch import prepare_encoder

    return prepare_encoder(model_dir, opts)


def _distill(ws) -> Path:
    from ..distill.stage import run_embedding

    return run_embedding(ws)


def _bench_quality(ws, student_dir: Path, exported: dict, threads: int) -> dict:
    from .embedding_bench import evaluate

    return evaluate(ws, student_dir, exported, threads)


def _bench_extras(ws, manifest: dict, bundle: Path, entries: list[dict], threads: list[int]) -> dict:
    from .embedding_bench import vocab_extras

    return vocab_extras(ws)


TASK = register_task(Task(
    name=EMBEDDING,
    bundle_task="sentence-embedding",
    sections=("teacher", "student", "data", "distill", "export", "bench"),
    options_of=lambda: NoOptions,
    outputs=("last_hidden_state", "sentence_embedding"),
    parity_metric="mean / min cosine to the fp32 student; probe accuracy change where the data has labels",
    quality_metric="probe_accuracy",
    runtime_api="Bundle.embed(texts) -> float32 [n, hidden]",
    report_rows=("size_ratio", "latency_p50_speedup", "quality_retention", "energy_ratio"),
    export_graph=_export_graph,
    graph_inputs=lambda model_dir: [],
    finish_graph=lambda path: None,
    et_prepare=_et_prepare,
    distill=_distill,
    exporter=EmbeddingExporter,
    bench_quality=_bench_quality,
    bench_extras=_bench_extras,
))
