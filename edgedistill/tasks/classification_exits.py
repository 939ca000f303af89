"""Early exits as a chain of ONNX graphs: a device that stops at exit k has run blocks 0..k once.

Exit k of a ``self_layerwise`` student reads block k's [CLS] state through dense -> tanh -> linear
(a BERT pooler + classifier). The student is cut at its exits into segments:

* ``exit_{e0}.onnx``: tokens -> embeddings -> blocks 0..e0 -> (``hidden_out``, exit e0's ``logits``);
* ``exit_{ek}.onnx``: (``hidden_in``, ``attention_mask``) -> blocks e(k-1)+1..ek -> (``hidden_out``, ``logits``);
* ``exit_rest.onnx``: (``hidden_in``, ``attention_mask``) -> the remaining blocks -> the final head's ``logits``.

The runtime runs segment 0 on every text and each later segment only on the texts not yet
confident, handing over the hidden states, so no block runs twice (an earlier layout with one
full cut model per exit recomputed the shared blocks and was slower than the plain model: 0.80x).
Each segment is quantised by the same scheme function as the full student; calibrated schemes (static
activation ranges from token inputs) and fp16 schemes get no segments, and their bundles answer
``exit_threshold`` from the full graph's exit outputs (same answers, no speed-up).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..fileutil import atomic_output, scratch_file, sha256_file, write_json_atomic
from ..progress import say

REST = "rest"
FORMAT = 3
"""Bumped when the segments' graphs change (2: attention fusable; 3: residual Sum, no SkipLayerNormalization),
so cached segments are rebuilt."""
CHAIN_INPUTS = ["hidden_in", "attention_mask"]


def chain_schemes(schemes: list[str]) -> list[str]:
    """The ONNX schemes whose segments can be made: no calibration from token inputs, no fp16 rewrite."""
    from ..export.schemes import get_scheme

    return [s for s in schemes if s == "fp32" or not (get_scheme(s).calibrated or get_scheme(s).needs_fp16)]


def _additive(mask):
    import torch

    # Written as transformers 4's SDPA mask (Unsqueeze, Unsqueeze, Expand, Cast, Sub, Cast, Where): the only
    # pattern onnxruntime's attention fusion still matches when the scores are scaled by a Mul, as
    # transformers 5 does. Any other form leaves every block's attention unfused (~25% slower per block).
    b, s = mask.shape
    ext = mask[:, None, None, :].expand(b, 1, s, s).to(torch.float32)
    inv = 1.0 - ext
    return inv.masked_fill(inv.to(torch.bool), torch.finfo(torch.float32).min)


def segments(model, exits, input_names: list[str]) -> list[tuple[str, object]]:
    """``[(name, module)]``: one segment per exit, then ``rest``; ``[]`` when the head is not BERT-shaped."""
    import torch

    from .classification import _bert_head, _first_token

    if _bert_head(model) is None:
        return []
    base = model.base_model
    bounds = [*exits.layers, model.config.num_hidden_layers - 1]

    class Segment(torch.nn.Module):
        def __init__(self, first: int, last: int, name: str):
            super().__init__()
            self.first_segment = first == 0
            self.embeddings = base.embeddings if first == 0 else None
            self.blocks = torch.nn.ModuleList(base.encoder.layer[first:last + 1])
            # The final head as submodules (pooler dense + tanh, classifier): a closure over the model's
            # modules would be traced as constants.
            self.head = exits.heads[name] if name != REST else torch.nn.Sequential(
                base.pooler.dense, base.pooler.activation, model.classifier)
            self.last_segment = name == REST

        def forward(self, *args):
            if self.first_segment:
                kw = dict(zip(input_names, args, strict=True))
                h = self.embeddings(input_ids=kw["input_ids"], token_type_ids=kw.get("token_type_ids"))
                mask = kw["attention_mask"]
            else:
                h, mask = args
            ext = _additive(mask)
            for block in self.blocks:
                h = block(h, attention_mask=ext)
                h = h[0] if isinstance(h, tuple) else h
            if self.last_segment:
                return (self.head(_first_token(h)),)
            return h, self.head(_first_token(h))

    out, first = [], 0
    for k, last in enumerate(bounds):
        name = str(last) if k < len(exits.layers) else REST
        out.append((name, Segment(first, last, name).eval()))
        first = last + 1
    return out


def _export_segment(module, name: str, first: bool, names: list[str], feats: dict, dest: Path, opset: int):
    """fp32 ONNX of one segment (dynamic batch and sequence); returns the segment's outputs on ``feats``."""
    import torch

    from ..export.onnx import _quiet

    args = tuple(feats[n] for n in names) if first else (feats["hidden_in"], feats["attention_mask"])
    in_names = names if first else CHAIN_INPUTS
    outs = ["logits"] if name == REST else ["hidden_out", "logits"]
    axes = {n: {0: "batch", 1: "sequence"} for n in in_names}
    axes.update({"logits": {0: "batch"}, "hidden_out": {0: "batch", 1: "sequence"}})
    with _quiet(), torch.inference_mode():
        torch.onnx.export(module, args, str(dest), input_names=in_names, output_names=outs, dynamic_axes=axes,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
        ref = module(*args)
    return dict(zip(outs, ref, strict=True))


def chain_variants(student_dir: Path, out_dir: Path, schemes: list[str], max_length: int,
                   opset: int = 17) -> dict[str, dict[str, Path]]:
    """``{scheme: {segment name: onnx path}}`` for the schemes of :func:`chain_schemes` (``{}`` when the
    student's head cannot be cut), cached in ``out_dir`` while the student and its exits are unchanged."""
    from ..distill.strategy_exits import WEIGHTS
    from ..backends import ort
    from ..export.onnx import input_names_for, optimize
    from ..export.schemes import get_scheme
    from ..models.loading import weights_file
    from .classification import load

    schemes = chain_schemes(schemes)
    if not schemes:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    key = f"{FORMAT}:{sha256_file(weights_file(student_dir))}+{sha256_file(student_dir / WEIGHTS)}"
    info_path = out_dir / "chain.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("source") != key:
        info = {"source": key, "segments": [], "schemes": {}, "attention_fused": {}}
    model, tok, exits = load(student_dir)
    names = input_names_for(tok)
    parts = segments(model, exits, names)
    if not parts:
        return {}
    seg_names = [n for n, _ in parts]
    if info["segments"] != seg_names or not all((out_dir / f"seg-{n}-fp32.onnx").is_file() for n in seg_names):
        say(f"exporting {len(parts)} early-exit segments of {student_dir} to ONNX")
        feats = {k: v for k, v in tok(["Distillation keeps what matters.", "A much longer sentence, to give the "
                                       "exporter a second, different sequence length."], padding=True,
                                      truncation=True, max_length=max_length, return_tensors="pt").items()}
        cfg = model.config
        fused = {}
        for k, (name, module) in enumerate(parts):
            dest = out_dir / f"seg-{name}-fp32.onnx"
            with scratch_file(out_dir, f"seg-{name}-raw.onnx") as raw, atomic_output(dest) as tmp:
                ref = _export_segment(module, name, k == 0, names, feats, raw, opset)
                try:  # the same fusions as the full student, so that the chain is compared like for like
                    fused[name] = optimize(raw, tmp, cfg.model_type, cfg.num_attention_heads, cfg.hidden_size,
                                           len(module.blocks))["attention_fused"]
                except Exception as e:  # noqa: BLE001 (an unfusable segment still runs, only slower)
                    say(f"segment {name}: fusions skipped ({type(e).__name__}: {e})")
                    Path(tmp).write_bytes(Path(raw).read_bytes())
                    fused[name] = False
                if not fused[name]:
                    say(f"segment {name}: attention left unfused, so stopping there saves less than it could")
            feed = ({n: feats[n].numpy() for n in names} if k == 0 else
                    {"hidden_in": feats["hidden_in"].numpy(), "attention_mask": feats["attention_mask"].numpy()})
            got = ort.open(dest, 1).run(feed)["logits"]
            diff = float(np.max(np.abs(got - ref["logits"].numpy())))
            if not np.isfinite(diff) or diff > 1e-3 * max(1.0, float(ref["logits"].abs().max())):
                raise ModelError(f"{dest}: early-exit segment {name} disagrees with PyTorch (max abs diff {diff:.3g})")
            if "hidden_out" in ref:
                feats["hidden_in"] = ref["hidden_out"]
        info = {"source": key, "segments": seg_names, "schemes": {}, "attention_fused": fused}
    paths: dict[str, dict[str, Path]] = {}
    for scheme in schemes:
        paths[scheme] = {}
        for name in seg_names:
            src = out_dir / f"seg-{name}-fp32.onnx"
            if scheme == "fp32":
                paths[scheme][name] = src
                continue
            dest = out_dir / f"seg-{name}-{scheme}.onnx"
            if info["schemes"].get(f"{scheme}/{name}") != sha256_file(src) or not dest.is_file():
                with atomic_output(dest) as tmp:
                    get_scheme(scheme).fn(src, tmp, None)
                info["schemes"][f"{scheme}/{name}"] = sha256_file(src)
            paths[scheme][name] = dest
    write_json_atomic(info_path, info)
    return paths


def bundle_entries(graphs: dict[str, Path]) -> tuple[dict, dict[str, bytes]]:
    """(``early_exits`` manifest fields, extra bundle files) for one scheme's segments."""
    files = {f"exit_{name}.onnx": path.read_bytes() for name, path in graphs.items()}
    fields = {"models": {name: f"exit_{name}.onnx" for name in graphs if name != REST},
              "rest": f"exit_{REST}.onnx", "chain_inputs": CHAIN_INPUTS,
              "graph": "chained segments: each exit graph hands its hidden states to the next"}
    return fields, files


def chain_agreement(graphs: dict[str, Path], main_run, tok, texts: list[str], max_length: int) -> dict[str, float]:
    """Top-1 agreement of each segment's logits with the same exit of the full graph (same scheme): the
    segments are run in a chain on every text, as the runtime does at a threshold above 1."""
    from ..backends import ort
    from .classification import output_names

    runs = {name: ort.open(path, 1) for name, path in graphs.items()}
    layers = [int(n) for n in graphs if n != REST]
    ref_names = output_names(layers)
    hits = {n: 0 for n in graphs}
    for start in range(0, len(texts), 32):
        feats = {k: v.astype(np.int64) for k, v in tok(texts[start:start + 32], padding=True, truncation=True,
                                                         max_length=max_length, return_tensors="np").items()}
        ref = main_run(feats)
        hidden = None
        for k, name in enumerate(graphs):
            feed = feats if k == 0 else {"hidden_in": hidden, "attention_mask": feats["attention_mask"]}
            res = runs[name].run(feed)
            hidden = res.get("hidden_out")
            hits[name] += int((res["logits"].argmax(1) == ref[ref_names[k]].argmax(1)).sum())
    return {name: hits[name] / max(1, len(texts)) for name in graphs}
