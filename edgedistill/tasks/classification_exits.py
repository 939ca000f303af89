"""Early exits as separate ONNX graphs: a device that stops at exit k runs only blocks 0..k.

Exit k of a ``self_layerwise`` student reads block k's [CLS] state through dense -> tanh -> linear,
which is exactly a BERT pooler + classifier. So the graph for exit k is the student cut after block k
with that exit as its head: a plain ``...ForSequenceClassification`` folder, exported and quantised by
the same code (and cache) as the full student. The bundle ships ``exit_{k}.onnx`` beside
``model.onnx``; the runtime runs exit 0's graph, then exit 1's for the texts not yet confident, and so
on, and the full model for the rest (each graph starts again from the tokens: blocks are recomputed,
which the latency figures of the bench include).
"""

from __future__ import annotations

import copy
from pathlib import Path


from ..fileutil import atomic_dir


def exit_folder(student_dir: Path, layer: int, dest: Path) -> Path:
    """``dest``: the student cut after block ``layer`` under exit ``layer``'s head (a HF classifier folder),
    rewritten only when missing (its weights are derived from the student's, which key the cache)."""
    from ..distill.strategy_exits import load_exits
    from ..models.classifier import load_classifier

    model, tok = load_classifier(Path(student_dir))
    exits = load_exits(Path(student_dir))
    cut = copy.deepcopy(model)
    cut.base_model.encoder.layer = cut.base_model.encoder.layer[: layer + 1]
    cut.config.num_hidden_layers = layer + 1
    head = exits.heads[str(layer)]
    cut.base_model.pooler.dense.load_state_dict(head[0].state_dict())
    cut.classifier.load_state_dict(head[2].state_dict())
    with atomic_dir(dest) as tmp:
        cut.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return dest


def exit_variants(ws, student_dir: Path, layers: list[int], schemes: list[str], calibration) -> dict:
    """{scheme: {layer: onnx path}} for every exit, through :func:`edgedistill.export.stage.onnx_variants`."""
    from ..export.stage import onnx_variants

    out: dict[str, dict[int, Path]] = {s: {} for s in schemes}
    for layer in layers:
        folder = exit_folder(student_dir, layer, ws.export_dir / f"student-exit-{layer}" / "model")
        v = onnx_variants(folder, ws.export_dir / f"student-exit-{layer}", ws.recipe, schemes,
                          calibration=calibration, task="classification")
        for s in schemes:
            out[s][layer] = v["paths"][s]
    return out


def exit_agreement(graphs: dict[int, Path], main_run, tok, texts: list[str], max_length: int) -> dict[str, float]:
    """Top-1 agreement of each exit graph with the same exit's output of the full graph (same scheme)."""
    from ..export.onnx import run_session, session
    from ..models.encode import batched_embed

    out = {}
    for layer, path in graphs.items():
        sess = session(path, 1)
        own = batched_embed(lambda f, s=sess: run_session(s, dict(f))["logits"], tok, texts, max_length,
                            desc=f"exit {layer} graph")
        ref = batched_embed(lambda f, name=f"exit_{layer}_logits": main_run(f)[name], tok, texts, max_length,
                            desc=f"exit {layer} in the full graph")
        out[str(layer)] = float((own.argmax(1) == ref.argmax(1)).mean())
    return out
