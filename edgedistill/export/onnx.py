"""PyTorch encoder -> ONNX with dynamic batch and sequence axes, then
onnxruntime's transformer optimiser (attention / LayerNorm / GELU fusion).

The graph returns both the token states and the pooled sentence embedding, so
an app gets the embedding without re-implementing pooling.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..backends import ort
from ..errors import ModelError
from ..models.loading import load_encoder

OUTPUTS = ["last_hidden_state", "sentence_embedding"]


def _wrapper(model, input_names, pooling: str, normalize: bool):
    import torch

    from ..models.encode import pool

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            kwargs = dict(zip(input_names, args, strict=True))
            hidden = self.model(**kwargs).last_hidden_state
            return hidden, pool(hidden, kwargs["attention_mask"], pooling, normalize)

    return Encoder().eval()


@contextlib.contextmanager
def _quiet():
    """The exporters are chatty (tracer warnings, deprecations); keep the user's terminal clean."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.root.level
        logging.root.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.root.setLevel(level)


def input_names_for(tokenizer) -> list[str]:
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    return names if "attention_mask" in names else names + ["attention_mask"]


def export_onnx(model_dir: Path, dest: Path, pooling: str, normalize: bool, max_length: int, opset: int = 17,
                sample_texts=("Distillation keeps what matters.", "A much longer sentence, to give the exporter "
                              "a second, different sequence length to look at.")) -> dict:
    """Export ``model_dir`` to ``dest`` (fp32) and check it against PyTorch on real sentences."""
    import torch

    # Eager attention exports as plain MatMul/Softmax, which onnxruntime fuses
    # into one Attention op; the SDPA path exports a graph it cannot fuse.
    model, tokenizer = load_encoder(model_dir, attn_implementation="eager")
    names = input_names_for(tokenizer)
    wrapped = _wrapper(model, names, pooling, normalize)
    feats = tokenizer(list(sample_texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    args = tuple(feats[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({"last_hidden_state": {0: "batch", 1: "sequence"}, "sentence_embedding": {0: "batch"}})
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter writes one self-contained file and produces the
    # graph shape onnxruntime's BERT fusions recognise; the dynamo exporter
    # writes external data and its attention pattern is not fused (measured).
    with _quiet(), torch.inference_mode():
        torch.onnx.export(wrapped, args, str(dest), input_names=names, output_names=OUTPUTS, dynamic_axes=axes,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
        ref = wrapped(*args)[1].numpy()
    got = run_session(dest, {n: feats[n].numpy() for n in names}, threads=1)["sentence_embedding"]
    diff = float(np.max(np.abs(got - ref)))
    if not np.isfinite(diff) or diff > 1e-3:
        raise ModelError(f"{dest}: fp32 ONNX export disagrees with PyTorch (max abs diff {diff:.3g} > 1e-3)")
    cfg = model.config
    return {"input_names": names, "max_abs_diff_vs_pytorch": diff, "num_heads": cfg.num_attention_heads,
            "hidden_size": cfg.hidden_size, "num_layers": cfg.num_hidden_layers, "model_type": cfg.model_type}


GRAPH_FORMAT = 2
"""Bumped when :func:`optimize` writes a different graph for the same weights (2: residual adds as ``Sum``)."""


def optimize(src: Path, dest: Path, model_type: str, num_heads: int, hidden_size: int, num_layers: int) -> dict:
    """onnxruntime transformer fusions; returns which fused operators were created.

    Every fusion except SkipLayerNormalization: onnxruntime's CPU kernel for it (1.32) is a scalar loop with a
    division per element, measured 4.9x slower than Add + LayerNormalization at 1 thread (325 vs 67 us on
    128 x 384) and 2.4x at 2, which made our int8 graph slower than an unfused one at 1 thread. The residual
    add is then written as ``Sum`` (see :func:`residual_sums`), so the runtime does not fuse it back.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    ort_type = model_type if model_type in ("bert", "bart", "gpt2") else "bert"
    options = FusionOptions(ort_type)
    options.enable_skip_layer_norm = False
    with _quiet():
        opt = optimize_model(str(src), model_type=ort_type, num_heads=num_heads, hidden_size=hidden_size,
                             optimization_options=options)
        stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        sums = residual_sums(opt.model)
        opt.save_model_to_file(str(dest))
    return {"fused_ops": stats, "attention_fused": stats.get("Attention", 0) == num_layers,
            "residual_sums": sums}


def residual_sums(model) -> int:
    """Rewrite each ``Add`` that feeds a LayerNormalization as the equivalent ``Sum``; returns how many.

    onnxruntime's session-time SkipLayerNormFusion matches ``Add -> LayerNormalization`` only, so a graph
    written this way keeps the fast LayerNormalization kernel in any app's session, not just ours.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    count = 0
    for node in model.graph.node:
        add = producer.get(node.input[0]) if node.op_type == "LayerNormalization" else None
        if add is not None and add.op_type == "Add" and add.domain in ("", "ai.onnx"):
            add.op_type = "Sum"
            count += 1
    return count


def session(path: Path, threads: int = 1):
    """An onnxruntime session (built in :mod:`edgedistill.backends.ort`, the one place sessions are made)."""
    return ort.session(path, threads)


def run_session(path_or_session, feed: dict, threads: int = 1) -> dict:
    sess = session(path_or_session, threads) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    wanted = {i.name for i in sess.get_inputs()}
    outs = sess.run(None, {k: np.asarray(v, dtype=np.int64) for k, v in feed.items() if k in wanted})
    return dict(zip([o.name for o in sess.get_outputs()], outs, strict=True))


def onnx_embedder(path: Path, threads: int = 2):
    """``feats -> [B, H]`` sentence embeddings, for :func:`edgedistill.models.encode.batched_embed`."""
    return ort.open(path, threads).output("sentence_embedding")
