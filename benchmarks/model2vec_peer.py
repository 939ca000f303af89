"""Model2Vec as a peer in the headline benchmark: a static embedding table distilled from the same teacher.

Model2Vec (PyPI ``model2vec``) distils a sentence transformer into one vector per vocabulary token in
minutes, without training data; a sentence is the mean of its tokens' vectors. It lives in its own venv
(``/work/venvs/model2vec``: ``pip install torch==2.13.0 'model2vec[distill,quantization]==0.10.0'``), so
the distillation runs there in a subprocess, offline, on the teacher folder the project fetched.

To time and score it with the same protocol as every other headline model, its table becomes an ONNX
bundle: ``Gather`` of the fp16 table (as Model2Vec stores it), a mean over the real tokens, and the
L2 normalisation its config asks for. Special tokens are masked out of the mean, since Model2Vec
tokenises without them while the bench's tokenizer adds them; the bundle carries Model2Vec's own
tokenizer (it drops the ``[unused*]`` pieces, so its ids differ from the teacher's).

    python benchmarks/model2vec_peer.py      # distil + bundle + probe accuracy on the headline's split
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_PYTHON = Path("/work/venvs/model2vec/bin/python")
PCA_DIMS = 256
"""Model2Vec's default output width."""

_DISTIL = r"""
import json, sys, time
from pathlib import Path
import model2vec
from model2vec.distill import distill_from_model
from transformers import AutoModel, AutoTokenizer
teacher, out, pca = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
m = distill_from_model(AutoModel.from_pretrained(teacher), AutoTokenizer.from_pretrained(teacher), pca_dims=pca,
                       device="cpu")
m.save_pretrained(out)
(out / "distill_info.json").write_text(json.dumps({"model2vec": model2vec.__version__, "pca_dims": pca,
                                                   "seconds": time.perf_counter() - t0}))
"""


def distil(teacher: Path, out: Path, python: Path = DEFAULT_PYTHON, pca_dims: int = PCA_DIMS) -> dict:
    """Model2Vec distilled from ``teacher`` into ``out`` (reused when already there); its distill_info."""
    info = out / "distill_info.json"
    if info.is_file() and json.loads(info.read_text()).get("pca_dims") == pca_dims:
        return json.loads(info.read_text())
    if not Path(python).is_file():
        raise FileNotFoundError(f"{python}: no Model2Vec venv (pip install torch==2.13.0 "
                                "'model2vec[distill,quantization]==0.10.0' into its own venv)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # From a neutral folder: model2vec ships a module named types.py that would shadow the standard library's.
    subprocess.run([str(python), "-c", _DISTIL, str(teacher), str(out), str(pca_dims)], check=True, env=env,
                   cwd=tempfile.gettempdir())
    return json.loads(info.read_text())


def _graph(table, keep, normalize: bool):
    """ONNX: ``input_ids, attention_mask [B, T] -> sentence_embedding [B, D]`` (masked mean of table rows)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = helper.make_node
    nodes = [
        n("Gather", ["table", "input_ids"], ["rows16"], axis=0),
        n("Cast", ["rows16"], ["rows"], to=TensorProto.FLOAT),
        n("Gather", ["keep", "input_ids"], ["kept"], axis=0),
        n("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        n("Mul", ["kept", "mask_f"], ["w"]),
        n("Unsqueeze", ["w", "last"], ["w3"]),
        n("Mul", ["rows", "w3"], ["weighted"]),
        n("ReduceSum", ["weighted", "one"], ["total"], keepdims=0),
        n("ReduceSum", ["w", "one"], ["count"], keepdims=1),
        n("Max", ["count", "eps"], ["count_safe"]),
        n("Div", ["total", "count_safe"], ["mean"]),
    ]
    out = "mean"
    if normalize:
        nodes += [n("ReduceL2", ["mean", "last"], ["norm"], keepdims=1), n("Max", ["norm", "eps"], ["norm_safe"]),
                  n("Div", ["mean", "norm_safe"], ["normed"])]
        out = "normed"
    nodes.append(n("Identity", [out], ["sentence_embedding"]))
    inits = [numpy_helper.from_array(table.astype(np.float16), "table"),
             numpy_helper.from_array(keep.astype(np.float32), "keep"),
             numpy_helper.from_array(np.array([-1], np.int64), "last"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array(1e-9, np.float32), "eps")]
    ids = [helper.make_tensor_value_info(k, TensorProto.INT64, ["batch", "sequence"])
           for k in ("input_ids", "attention_mask")]
    emb = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", int(table.shape[1])])
    graph = helper.make_graph(nodes, "model2vec_mean", ids, [emb], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="edgedistill")
    onnx.checker.check_model(model)
    return model


def _tokenizer_dir(m2v: Path, teacher: Path, dest: Path) -> tuple[Path, list[int]]:
    """Model2Vec's tokenizer.json with the teacher's special-token settings (so padding works), and the ids of
    its special tokens."""
    tok = json.loads((m2v / "tokenizer.json").read_text())
    vocab = tok.get("model", {}).get("vocab", {})
    special = {a["content"]: a["id"] for a in tok.get("added_tokens", []) if a.get("special")}
    cfg = json.loads((teacher / "tokenizer_config.json").read_text())
    keep = {k: v for k, v in cfg.items() if k.endswith("_token") and isinstance(v, str)
            and (v in vocab or v in special)}
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, **keep}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "tokenizer.json").write_text((m2v / "tokenizer.json").read_text())
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    ids = sorted(set(special.values()) | {vocab[v] for v in keep.values() if v in vocab})
    return dest, ids


def to_bundle(m2v: Path, teacher: Path, dest: Path, max_length: int = 128) -> Path:
    """An onnxruntime sentence-embedding bundle computing Model2Vec's embedding (see the module docstring)."""
    import numpy as np
    import onnx
    from safetensors.numpy import load_file

    from edgedistill.export.bundle import write_bundle

    table = load_file(str(m2v / "model.safetensors"))["embeddings"]
    normalize = bool(json.loads((m2v / "config.json").read_text()).get("normalize", False))
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir, special = _tokenizer_dir(m2v, teacher, Path(tmp) / "tokenizer")
        keep = np.ones(table.shape[0], np.float32)
        keep[[i for i in special if i < len(keep)]] = 0.0
        onnx.save(_graph(table, keep, normalize), str(Path(tmp) / "model.onnx"))
        manifest = {
            "task": "sentence-embedding", "backend": "onnxruntime", "target": {"name": "phone", "threads": 2},
            "quantization": {"scheme": "fp16-table"}, "max_length": max_length, "pooling": "mean",
            "normalize": normalize,
            "inputs": [{"name": k, "dtype": "int64", "shape": ["batch", "sequence"]}
                       for k in ("input_ids", "attention_mask")],
            "outputs": [{"name": "sentence_embedding", "dtype": "float32", "shape": ["batch", int(table.shape[1])]}],
            "hidden_size": int(table.shape[1]), "labels": None,
            "model2vec": json.loads((m2v / "distill_info.json").read_text()),
        }
        return write_bundle(dest, Path(tmp) / "model.onnx", tok_dir, manifest)


def build(teacher: Path, out: Path, python: Path = DEFAULT_PYTHON, max_length: int = 128) -> Path:
    distil(teacher, out / "model2vec", python)
    return to_bundle(out / "model2vec", teacher, out / "model2vec-bundle", max_length)


def versus(report: dict, ours: str, theirs: str) -> dict:
    """The headline's ``vs_model2vec`` block from a bench report holding both models."""
    by = {m["name"]: m for m in report["models"]}
    a, b = by[ours], by[theirs]
    qa, qb = a["quality"], b["quality"]
    t = str(report["settings"]["threads"][0])
    delta = se = None
    if qa.get("probe_accuracy") is not None and qb.get("probe_accuracy") is not None:
        delta = 100 * (qa["probe_accuracy"] - qb["probe_accuracy"])
        # Unpaired (the report keeps no per-sentence correctness): larger than the paired SE, so conservative.
        se = 100 * math.sqrt(qa["probe_accuracy_se"] ** 2 + qb["probe_accuracy_se"] ** 2)
    pa, pb = (a["latency"].get(t) or {}).get("p50_ms"), (b["latency"].get(t) or {}).get("p50_ms")
    return {
        "model": theirs,
        "quality_delta": delta,
        "quality_delta_se": se,
        "quality_delta_beyond_one_se": None if delta is None else delta > se,
        "quality_delta_meaning": "our student's probe accuracy minus Model2Vec's, in points (test split)",
        "latency_ratio": pa / pb if pa and pb else None,
        "latency_ratio_meaning": f"our student's p50 / Model2Vec's p50 at {t} threads (> 1: ours is slower)",
        "size_ratio": b["size_bytes"] / a["size_bytes"],
        "spearman_vs_teacher": {"ours": qa.get("spearman_vs_teacher"), "model2vec": qb.get("spearman_vs_teacher")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "examples" / "headline.toml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "model2vec-peer"))
    ap.add_argument("--python", default=str(DEFAULT_PYTHON), help="the Model2Vec venv's python")
    ap.add_argument("--spearman", action="store_true",
                    help="also rank pairwise similarities against the teacher's (a teacher pass over the test split)")
    args = ap.parse_args()

    from edgedistill.bench.kinds import detect
    from edgedistill.models.encode import batched_embed
    from edgedistill.models.loading import load_tokenizer
    from edgedistill.models.teacher import resolve_model
    from edgedistill.measure.runners import load
    from edgedistill.quality.metrics import accuracy_se, pairwise_spearman
    from edgedistill.recipe import load_recipe
    from edgedistill.workspace import Workspace

    recipe = load_recipe(args.recipe)
    teacher = resolve_model(recipe.teacher.package, recipe, "[teacher] package").folder
    out = Path(args.out)
    bundle = build(teacher, out, Path(args.python), recipe.teacher.max_length)
    # The headline bench's quality protocol (bench/adhoc.py): the model's own probe, C chosen on validation.
    ws = Workspace(recipe, out)
    src, tok = detect(bundle), load_tokenizer(bundle)
    embed = load(src.backend, src.model_file, 2, "mean", src.normalize).embed

    def on(split, positions):
        texts = ws.texts(split)
        return batched_embed(embed, tok, [texts[i] for i in positions], recipe.teacher.max_length, desc=split)

    te = ws.probe_set("test")
    probe = ws.fit_probe(on)
    test = batched_embed(embed, tok, ws.texts("test"), recipe.teacher.max_length, desc="test")
    acc = probe.accuracy(test[te.idx], te.labels)
    result = {"bundle": str(bundle), "size_bytes": src.size_bytes, "model2vec": src.bundle["model2vec"],
              "probe_accuracy": acc, "probe_accuracy_se": accuracy_se(acc, len(te.idx)), "probe_test_n": len(te.idx),
              "probe_C": probe.C}
    if args.spearman:
        result["spearman_vs_teacher"] = pairwise_spearman(test, ws.teacher_embeddings("test"),
                                                          limit=recipe.bench.spearman_sentences)
    stored = HERE / "results" / "headline.json"
    if stored.is_file():
        head = json.loads(stored.read_text())["headline"]
        ours = head["student"]["probe_accuracy"]
        result["stored_headline_student_probe_accuracy"] = ours
        result["quality_delta_vs_stored_student"] = 100 * (ours - acc)
    result["command"] = "python benchmarks/model2vec_peer.py" + (" --spearman" if args.spearman else "")
    result["note"] = ("quality only (no latency: timings belong in the headline's one bench run); "
                      "model2vec.seconds is the wall time of its distillation on this host")
    text = json.dumps(result, indent=2) + "\n"
    (out / "model2vec_peer.json").write_text(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "model2vec_peer.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
