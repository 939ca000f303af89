"""PTQ vs quantization-aware distillation (QAD) of one encoder recipe, at the same training budget.

    python benchmarks/qad.py --recipe examples/quickstart.toml --steps 800 --out runs/qad

Distils the recipe's student twice, ``[distill] qat = "none"`` (quantized after training) and
``qat = "int8"`` (trained through the int8-dynamic export's fake quantization), exports both with
int8-dynamic ONNX, and scores the exported files, not the PyTorch students: cosine to the teacher
on validation sentences, and a sentiment probe fitted on each file's own embeddings (C chosen on
validation; accuracy on validation and test). ``benchmarks/headline.py --qad`` adds the same block
to the headline report. Writes OUT/qad.json.
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


def _score(ws, onnx_path: Path, tok, val_idx: np.ndarray) -> dict:
    from edgedistill.export.onnx import onnx_embedder
    from edgedistill.models.encode import batched_embed
    from edgedistill.quality.metrics import mean_cosine

    r = ws.recipe
    run = onnx_embedder(onnx_path, threads=2)

    def embed(split: str, positions) -> np.ndarray:
        texts = ws.texts(split)
        return batched_embed(run, tok, [texts[i] for i in positions], r.teacher.max_length,
                             desc=f"{onnx_path.parents[2].name} int8 ({split})")

    teacher = ws.teacher_embeddings("validation")[val_idx]
    out = {"val_cosine_to_teacher": mean_cosine(embed("validation", val_idx), teacher)}
    probe = ws.fit_probe(embed, limit=PROBE_TRAIN)
    if probe is not None:
        te = ws.probe_set("test")
        out.update(probe_val_accuracy=probe.val_accuracy, probe_test_accuracy=probe.accuracy(embed("test", te.idx),
                                                                                              te.labels))
    return out


def compare(recipe, out: Path, steps: int | None = None) -> dict:
    """The ``qad`` block: per variant its int8 ONNX scores and distill record, then QAD minus PTQ."""
    from edgedistill import api
    from edgedistill.export.stage import onnx_variants
    from edgedistill.models.loading import load_tokenizer
    from edgedistill.workspace import Workspace

    block = {"steps": steps or recipe.distill.max_steps, "export_scheme": "int8-dynamic"}
    for name, qat in (("ptq", "none"), ("qad", "int8")):
        changes = {"qat": qat} if steps is None else {"qat": qat, "max_steps": steps,
                                                      "eval_every": max(1, min(recipe.distill.eval_every, steps))}
        variant = dataclasses.replace(recipe, distill=recipe.distill.replace(**changes))
        ws = Workspace(variant, out / name)
        t0 = time.perf_counter()
        student = api.distill(variant, out / name)
        seconds = time.perf_counter() - t0
        path = onnx_variants(student, out / name / "export" / "student", variant, ["int8-dynamic"])["paths"]
        val_idx = ws.sample("validation", variant.distill.eval_sentences)
        record = json.loads((student / "distill.json").read_text())
        block[name] = {"qat": qat, **_score(ws, path["int8-dynamic"], load_tokenizer(student), val_idx),
                       "best_val_cosine_pytorch": record["metrics"]["best_val_cosine"], "distill_seconds": seconds}
    block["delta"] = {k: block["qad"][k] - block["ptq"][k] for k in block["ptq"]
                      if k.startswith(("val_", "probe_")) and k in block["qad"]}
    return block


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "examples" / "quickstart.toml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "qad"))
    ap.add_argument("--steps", type=int, default=None, help="training steps of each variant (default: the recipe's)")
    args = ap.parse_args()
    from edgedistill.recipe import load_recipe

    out = Path(args.out)
    block = compare(load_recipe(args.recipe), out, args.steps)
    block["command"] = "python benchmarks/qad.py " + " ".join(sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    (out / "qad.json").write_text(json.dumps(block, indent=2) + "\n")
    print(json.dumps(block, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
