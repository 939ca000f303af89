"""PTQ vs quantization-aware distillation (QAD) of one encoder recipe, at the same training budget.

    python benchmarks/qad.py --recipe examples/quickstart.toml --steps 800 --out runs/qad
    python benchmarks/qad.py --scheme int8-static --out runs/qad-static     # static activation scales

Distils the recipe's student twice, ``[distill] qat = "none"`` (quantized after training) and the
``qat`` of the export scheme (``int8`` for int8-dynamic: trained through its fake quantization;
``int8-static``: also learns the activation ranges the export then uses, where PTQ calibrates them on
training sentences), exports both with that scheme's ONNX, and scores the exported files, not the
PyTorch students: the Spearman correlation of pairwise cosines with the teacher's (and the cosine to
the teacher when the widths match) on validation sentences, and a sentiment probe fitted on each
file's own embeddings (C chosen on validation; accuracy on validation and test).
``benchmarks/headline.py --qad`` adds the same block to the headline report. Writes OUT/qad.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROBE_TRAIN = 4000
QAT_OF_SCHEME = {"int8-dynamic": "int8", "int8-static": "int8-static"}
"""The ``[distill] qat`` that trains through each ONNX export scheme's own quantization."""


def _score(ws, onnx_path: Path, tok, val_idx: np.ndarray) -> dict:
    from edgedistill.export.onnx import onnx_embedder
    from edgedistill.models.encode import batched_embed
    from edgedistill.quality.metrics import mean_cosine, pairwise_spearman

    r = ws.recipe
    run = onnx_embedder(onnx_path, threads=2)

    def embed(split: str, positions) -> np.ndarray:
        texts = ws.texts(split)
        return batched_embed(run, tok, [texts[i] for i in positions], r.teacher.max_length,
                             desc=f"{onnx_path.parents[2].name} int8 ({split})")

    teacher = ws.teacher_embeddings("validation")[val_idx]
    student = embed("validation", val_idx)
    # A student cut from another model ([student] base) is narrower than the teacher and ships without the
    # training projection: no cosine then, only how it ranks sentence pairs (any width).
    out = {"val_spearman_vs_teacher": pairwise_spearman(student, teacher)}
    if student.shape[1] == teacher.shape[1]:
        out["val_cosine_to_teacher"] = mean_cosine(student, teacher)
    probe = ws.fit_probe(embed, limit=PROBE_TRAIN)
    if probe is not None:
        te = ws.probe_set("test")
        out.update(probe_val_accuracy=probe.val_accuracy, probe_test_accuracy=probe.accuracy(embed("test", te.idx),
                                                                                              te.labels))
    return out


def at_steps(recipe, steps: int | None, **changes):
    """The recipe with ``[distill]`` changes, and ``max_steps`` (eval_every capped by it) when given."""
    if steps is not None:
        changes.update(max_steps=steps, eval_every=max(1, min(recipe.distill.eval_every, steps)))
    return dataclasses.replace(recipe, distill=recipe.distill.replace(**changes))


def distil_and_score(variant, out: Path, scheme: str = "int8-dynamic") -> dict:
    """Distil ``variant`` into OUT, export its student with ``scheme``'s ONNX and score the exported file."""
    from edgedistill import api
    from edgedistill.export.stage import calibration_factory, onnx_variants
    from edgedistill.models.loading import load_tokenizer
    from edgedistill.workspace import Workspace

    ws = Workspace(variant, out)
    t0 = time.perf_counter()
    student = api.distill(variant, out)
    seconds = time.perf_counter() - t0
    # Static scales come from calibration sentences after PTQ, from the ranges training learned after QAD.
    path = onnx_variants(student, out / "export" / "student", variant, [scheme],
                         calibration=calibration_factory(ws, student))["paths"]
    val_idx = ws.sample("validation", variant.distill.eval_sentences)
    record = json.loads((student / "distill.json").read_text())
    return {**_score(ws, path[scheme], load_tokenizer(student), val_idx),
            "best_val_cosine_pytorch": record["metrics"]["best_val_cosine"], "distill_seconds": seconds}


def compare(recipe, out: Path, steps: int | None = None, scheme: str = "int8-dynamic") -> dict:
    """The ``qad`` block: per variant its ``scheme`` ONNX scores and distill record, then QAD minus PTQ."""
    block = {"steps": steps or recipe.distill.max_steps, "export_scheme": scheme}
    for name, qat in (("ptq", "none"), ("qad", QAT_OF_SCHEME[scheme])):
        block[name] = {"qat": qat, **distil_and_score(at_steps(recipe, steps, qat=qat), out / name, scheme)}
    block["delta"] = {k: block["qad"][k] - block["ptq"][k] for k in block["ptq"]
                      if k.startswith(("val_", "probe_")) and k in block["qad"]}
    return block


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "examples" / "quickstart.toml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "qad"))
    ap.add_argument("--steps", type=int, default=None, help="training steps of each variant (default: the recipe's)")
    ap.add_argument("--scheme", default="int8-dynamic", choices=sorted(QAT_OF_SCHEME),
                    help="the ONNX export scheme both variants ship with (QAD trains through its quantization)")
    args = ap.parse_args()
    from edgedistill.recipe import load_recipe

    out = Path(args.out)
    block = compare(load_recipe(args.recipe), out, args.steps, args.scheme)
    block["command"] = "python benchmarks/qad.py " + " ".join(sys.argv[1:])
    block["measured"] = time.strftime("%Y-%m-%d")
    from edgedistill.fileutil import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "qad.json", json.dumps(block, indent=2) + "\n")
    print(json.dumps(block, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
