"""The classification task: ``...ForSequenceClassification`` students on every export path.

What this task adds to each stage:

* export: a graph with the token inputs of the encoder and a ``logits`` output ``[batch, classes]``
  (ONNX with dynamic axes, or a fixed-shape ExecuTorch program); a student distilled with early exits
  (``self_layerwise``) also returns every exit's logits, ``exit_{layer}_logits``, before ``logits``, and
  ONNX bundles ship the student cut at its exits as chained segments (:mod:`edgedistill.tasks.classification_exits`);
* parity: the exported logits against the fp32 PyTorch student on held-out sentences: top-1
  agreement, accuracy change on the labelled ones, and the largest logit difference (reported);
* bundle: ``task = "classification"``, ``labels`` (class names by id, from the data via the
  checkpoint's ``id2label``), ``num_labels`` and ``early_exits``;
* bench: test-split accuracy of every model against the labels (the teacher is the classifier
  teacher), beside latency, memory and modelled energy;
* runtime: ``Bundle.predict`` returns label, score and per-class probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ModelError
from . import CLASSIFICATION, Task, register_task
from .classification_options import ClassificationOptions

OUTPUT = "logits"
DECIDED_MARGIN = 0.1
"""Top-two probability gap of the fp32 student above which a changed answer counts against an export."""


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def exit_layers(model_dir: Path) -> list[int]:
    """Blocks with an early exit saved next to the student (``self_layerwise``), else []."""
    from ..distill.strategy_exits import META

    meta = Path(model_dir) / META
    if not meta.is_file():
        return []
    try:
        return [int(i) for i in json.loads(meta.read_text())["layers"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{meta}: unreadable early-exit description ({e})") from None


def output_names(exits: list[int]) -> list[str]:
    return [f"exit_{i}_logits" for i in exits] + [OUTPUT]


def labels_of(config) -> list[str]:
    from ..models.classifier import config_labels

    id2label = config_labels(config)
    return [id2label.get(i, str(i)) for i in range(int(config.num_labels))]


def load(model_dir: Path, attn_implementation: str = "eager"):
    """(model, tokenizer, exits or None) of a classifier student folder."""
    from ..models.classifier import load_classifier

    model, tok = load_classifier(Path(model_dir), attn_implementation=attn_implementation)
    exits = None
    if exit_layers(model_dir):
        from ..distill.strategy_exits import load_exits

        exits = load_exits(Path(model_dir))
    return model, tok, exits


def _first_token(h):
    # A slice rather than h[:, 0]: that exports as a Gather on activations, which onnxruntime's dynamic
    # quantiser (int8 embedding tables after static QDQ) turns into a graph that is not a DAG.
    return h.narrow(1, 0, 1).flatten(1)


def _bert_head(model):
    """``f(last_hidden_state) -> logits`` for BERT-style heads (pooler dense + tanh, then a linear), else None."""
    pooler = getattr(model.base_model, "pooler", None)
    dense, act = getattr(pooler, "dense", None), getattr(pooler, "activation", None)
    head = getattr(model, "classifier", None)
    import torch

    if not (isinstance(dense, torch.nn.Linear) and act is not None and isinstance(head, torch.nn.Linear)):
        return None
    return lambda h: head(act(dense(_first_token(h))))


def wrapper(model, input_names: list[str], exits=None, mask_to_additive=None):
    """``forward(*inputs) -> (exit logits..., logits)``; ``mask_to_additive(mask) -> 4-D mask`` for ExecuTorch.

    Computes what ``model(**inputs).logits`` computes (eval mode: dropout is the identity)."""
    import torch

    head = _bert_head(model)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.exits = exits

        def forward(self, *args):
            kw = dict(zip(input_names, args, strict=True))
            if mask_to_additive is not None:
                kw["attention_mask"] = mask_to_additive(kw["attention_mask"])
            states = self.exits is not None
            if head is not None:
                out = self.model.base_model(**kw, output_hidden_states=states)
                logits = head(out.last_hidden_state)
            else:
                out = self.model(**kw, output_hidden_states=states)
                logits = out.logits
            if self.exits is None:
                return (logits,)
            early = [self.exits.heads[str(i)](_first_token(out.hidden_states[i + 1])) for i in self.exits.layers]
            return (*early, logits)

    return Classifier().eval()


def export_onnx(model_dir: Path, dest: Path, max_length: int, opset: int = 17) -> dict:
    """``model_dir`` -> ``dest`` (fp32 ONNX, dynamic batch and sequence), checked against PyTorch."""
    import torch

    from ..export.onnx import _quiet, input_names_for, run_session

    model, tok, exits = load(model_dir)
    names = input_names_for(tok)
    wrapped = wrapper(model, names, exits)
    outs = output_names(exits.layers if exits is not None else [])
    feats = tok(["Distillation keeps what matters.", "A much longer sentence, to give the exporter a second, "
                 "different sequence length to look at."], padding=True, truncation=True, max_length=max_length,
                return_tensors="pt")
    args = tuple(feats[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({o: {0: "batch"} for o in outs})
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _quiet(), torch.inference_mode():
        torch.onnx.export(wrapped, args, str(dest), input_names=names, output_names=outs, dynamic_axes=axes,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
        ref = wrapped(*args)[-1].numpy()
    got = run_session(dest, {n: feats[n].numpy() for n in names}, threads=1)[OUTPUT]
    diff = float(np.max(np.abs(got - ref)))
    if not np.isfinite(diff) or diff > 1e-3 * max(1.0, float(np.max(np.abs(ref)))):
        raise ModelError(f"{dest}: fp32 ONNX export disagrees with PyTorch (logits max abs diff {diff:.3g})")
    cfg = model.config
    return {"input_names": names, "output_names": outs, "max_abs_diff_vs_pytorch": diff,
            "num_heads": cfg.num_attention_heads, "hidden_size": cfg.hidden_size,
            "num_layers": cfg.num_hidden_layers, "model_type": cfg.model_type, "task": "classification",
            "num_labels": int(cfg.num_labels), "exits": exits.layers if exits is not None else []}


def unshare_initializers(path: Path) -> None:
    """Give every node its own copy of an initializer that the exporter shared between nodes.

    The ONNX optimiser merges equal constants (zero biases of a fresh head and of a LayerNorm); after
    static QDQ, onnxruntime's int8 embedding pass then fails on the shared tensor ("Graph is not a
    DAG"). Copies cost only the bytes of those few equal tensors."""
    import onnx

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    changed = False
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name not in inits:
                continue
            if name in seen and node.op_type == "Gemm":
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}__{node.name or k}"
                model.graph.initializer.append(copy)
                node.input[k] = copy.name
                changed = True
            seen.add(name)
    if changed:
        onnx.save(model, str(path))


def et_prepare(model_dir: Path, opts):
    """Like :func:`edgedistill.export.executorch.prepare` for a classifier: (module, tokenizer, input
    names, example args at the program's fixed shape)."""
    import torch

    from ..export import executorch as et
    from ..export.onnx import input_names_for

    et.require_executorch()
    model, tok, exits = load(model_dir)
    names = input_names_for(tok)
    et._use_attention(model)
    et._swap_layer_norms(model)

    def additive(mask):
        m = mask.to(torch.float32)
        b, s = m.shape
        return ((1.0 - m) * et.MASK_FILL).view(b, 1, 1, s)

    feats = tok(["edge"], padding="max_length", truncation=True, max_length=opts.max_length, return_tensors="pt")
    return wrapper(model, names, exits, additive), tok, names, tuple(feats[n] for n in names)


def torch_logits(model_dir: Path, texts: list[str], max_length: int) -> np.ndarray:
    """fp32 PyTorch logits of the student's final head (the parity reference)."""
    from ..models.classifier import load_classifier, predict_logits

    model, tok = load_classifier(Path(model_dir))
    return predict_logits(model, tok, texts, max_length)


def runner_logits(run, tok, texts: list[str], max_length: int, desc: str) -> np.ndarray:
    """Logits of an exported model: ``run(features) -> [B, classes]``."""
    from ..models.encode import batched_embed

    return batched_embed(run, tok, texts, max_length, desc=desc)


def onnx_logits_runner(path: Path, threads: int = 1):
    from ..backends import ort

    return ort.open(Path(path), threads).output(OUTPUT)


def onnx_session_runner(path: Path, threads: int = 1):
    """``run(features) -> {output name: array}`` of an ONNX graph (every exit's logits and the final ones)."""
    from ..backends import as_numpy, ort

    runner = ort.open(Path(path), threads)
    return lambda feats: runner.run(as_numpy(feats))


def pte_logits_runner(path: Path, threads: int = 1):
    from ..backends.et import pte_runner

    run = pte_runner(path, threads)  # the program's last output: the final head's logits
    return lambda feats: run({k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in dict(feats).items()})


def logits_runner(path: Path, threads: int = 1):
    return pte_logits_runner(path, threads) if Path(path).suffix == ".pte" else onnx_logits_runner(path, threads)


def manifest_fields(student_dir: Path, exp: dict | None, tok) -> dict:
    """The bundle manifest's task-specific fields for a classifier (inputs are added by the caller)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(student_dir, local_files_only=True)
    exits = exit_layers(student_dir)
    n = int(cfg.num_labels)
    return {
        "task": "classification",
        "outputs": [{"name": o, "dtype": "float32", "shape": ["batch", n]} for o in output_names(exits)],
        "labels": labels_of(cfg),
        "num_labels": n,
        "hidden_size": int(cfg.hidden_size),
        "pooling": None,
        "normalize": None,
        "early_exits": ({"layers": exits, "outputs": output_names(exits)[:-1],
                         "rule": "stop at the first exit whose top softmax probability >= exit_threshold"}
                        if exits else None),
    }


class ClassificationExporter:
    def __init__(self, ws, student_dir: Path):
        from .classification_parity import reference

        self.ws, self.student_dir = ws, Path(student_dir)
        self.tok, self.texts, self.ref, self.rows, self.labels = reference(ws, student_dir)
        self.exit_graphs: dict = {}
        from ..models.vocab_student import held_out_report

        self.vocab = held_out_report(ws, student_dir, self.texts)
        """Kept rows and out-of-vocabulary rates on the parity sentences (held-out test text)."""

    def prepare(self, onnx_schemes: list[str]) -> None:
        if not (onnx_schemes and exit_layers(self.student_dir)):
            return
        from .classification_exits import chain_variants

        r = self.ws.recipe
        # The student cut at its exits too, so a device that stops early runs only the blocks it needs.
        self.exit_graphs = chain_variants(self.student_dir, self.ws.export_dir / "student-exits", onnx_schemes,
                                          r.teacher.max_length, r.export.opset)

    def check(self, model_path: Path, scheme, target):
        from .classification_parity import check_parity

        run = logits_runner(model_path, threads=target.host_threads())
        got = runner_logits(run, self.tok, self.texts, self.ws.recipe.teacher.max_length,
                            desc=f"parity {scheme.name}")
        return check_parity(self.ref, got, scheme, target, self.rows, self.labels)

    def manifest_fields(self, scheme, model_path: Path, target, pte: bool) -> tuple[dict, dict]:
        fields = {**manifest_fields(self.student_dir, None, self.tok), "vocab": self.vocab}
        graphs = None if pte else self.exit_graphs.get(scheme.name)
        if not graphs:
            return fields, {}
        from .classification_exits import bundle_entries, chain_agreement

        full = onnx_session_runner(model_path, threads=target.host_threads())
        exit_fields, extra = bundle_entries(graphs)
        fields["early_exits"].update(exit_fields)
        fields["early_exits"]["graph_top1_agreement"] = chain_agreement(graphs, full, self.tok, self.texts,
                                                                        self.ws.recipe.teacher.max_length)
        return fields, extra


def _graph_inputs(model_dir: Path) -> list[Path]:
    from ..distill.strategy_exits import WEIGHTS

    return [Path(model_dir) / WEIGHTS] if exit_layers(model_dir) else []


def _distill(ws) -> Path:
    from ..distill.classify_stage import run_classify

    return run_classify(ws)


def _bench_quality(ws, student_dir: Path, exported: dict, threads: int) -> dict:
    from .classification_bench import evaluate

    return evaluate(ws, student_dir, exported, threads)


def _bench_extras(ws, manifest: dict, bundle: Path, entries: list[dict], threads: list[int]) -> dict:
    """The student's vocabulary on the test split and the early-exit table (accuracy and mean latency per
    threshold) of a bundle that has exits."""
    from .embedding_bench import vocab_extras

    vocab = vocab_extras(ws)
    if not manifest.get("early_exits"):
        return vocab
    from ..models.classifier import labelled_split
    from .classification_bench import exit_table

    texts, y = labelled_split(ws, "test", {n: i for i, n in enumerate(manifest["labels"])})
    lat = (next((m for m in entries if m["name"] == "student-onnx-int8"), {}).get("latency") or {})
    chained = bool(manifest["early_exits"].get("rest"))
    return {**vocab, "early_exits": {
        "layers": manifest["early_exits"]["layers"],
        "note": ("exit segments (exit_k.onnx, exit_rest.onnx, chained): texts stop at the first confident exit; "
                 "mean latency of one text, 1 thread, this process, first 200 test texts" if chained else
                 "one graph returns every exit's logits: the threshold picks the answer, the latency is the bundle's"),
        "thresholds": exit_table(bundle, texts, y, (lat.get(str(threads[0])) or {}).get("p50_ms"))}}


TASK = register_task(Task(
    name=CLASSIFICATION,
    bundle_task="classification",
    sections=("teacher", "student", "data", "distill", "export", "bench"),
    options_of=lambda: ClassificationOptions,
    outputs=("logits", "exit_{layer}_logits (students with early exits)"),
    parity_metric="top-1 agreement with the fp32 student on decided sentences; accuracy change on labelled ones",
    quality_metric="accuracy",
    runtime_api="Bundle.predict(texts, exit_threshold=None) -> label, score, probabilities",
    report_rows=("size_ratio", "latency_p50_speedup", "accuracy_retention", "energy_ratio", "early_exits"),
    export_graph=lambda model_dir, dest, r: export_onnx(model_dir, dest, r.teacher.max_length, r.export.opset),
    graph_inputs=_graph_inputs,
    finish_graph=unshare_initializers,
    et_prepare=et_prepare,
    distill=_distill,
    exporter=ClassificationExporter,
    bench_quality=_bench_quality,
    bench_extras=_bench_extras,
))
