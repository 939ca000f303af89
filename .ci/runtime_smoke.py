"""CI check that `pip install -e '.[runtime]'` runs a bundle without torch.

    python .ci/runtime_smoke.py make DIR    # in the full venv: a tiny bundle, its zip, expected embeddings
    python .ci/runtime_smoke.py check DIR   # in a venv with only the runtime extra
"""

import json
import subprocess
import sys
from pathlib import Path

TEXTS = ["the movie was great", "a dull and boring film", "so charming and funny but the ending was painful"]


def make(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_tiny_bert, make_tiny_bundle

    from edgedistill.export.bundle import write_zip
    from edgedistill.models.encode import embed_torch
    from edgedistill.models.loading import load_encoder

    teacher = build_tiny_bert(out / "teacher")
    bundle = make_tiny_bundle(teacher, out)
    write_zip(bundle, out / "bundle.zip")
    model, tok = load_encoder(teacher)
    expected = {"texts": TEXTS, "embeddings": embed_torch(model, tok, TEXTS, 32).tolist()}
    expected["lm"] = make_lm(out)
    (out / "expected.json").write_text(json.dumps(expected))
    print(f"runtime smoke: bundles written to {bundle} and {out / 'lm'}")


def make_lm(out: Path) -> dict:
    """A tiny causal LM as an ONNX bundle (zipped) and eager's greedy continuation of a prompt."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
    from llm_tiny import trained_tiny_llama

    from edgedistill import api
    from edgedistill.llm.generate import EagerLM, Sampling, generate_text
    from edgedistill.llm.teacher import load_causal_lm

    student = trained_tiny_llama(out / "lm-student")
    api.llm_export(student, out / "lm", scheme="onnx-fp32", max_cache_len=32, zip_bundle=True)
    model, tok = load_causal_lm(student)
    prompt = "the big cat sat"
    return {"prompt": prompt, "text": generate_text(EagerLM(model, 32), tok, prompt, Sampling(max_new_tokens=10))}


def check(out: Path) -> None:
    import importlib.util
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from edgedistill.runtime import Bundle

    for mod in ("torch", "transformers"):
        assert importlib.util.find_spec(mod) is None, f"{mod} is installed in the runtime venv"
    expected = json.loads((out / "expected.json").read_text())
    want = np.asarray(expected["embeddings"], dtype=np.float32)
    for path in (out / "bundle", out / "bundle.zip"):
        b = Bundle.open(path, threads=1)
        got = b.embed(expected["texts"])
        assert np.max(np.abs(got - want)) < 1e-4, (path, np.max(np.abs(got - want)))
        many = [[t] for t in expected["texts"] * 4]
        with ThreadPoolExecutor(3) as pool:
            parallel = list(pool.map(b.embed, many))
        assert all(np.array_equal(p, b.embed(t)) for p, t in zip(parallel, many, strict=True))
    cmd = ["edgedistill", "predict", "--bundle", str(out / "bundle.zip"), "--json", expected["texts"][0]]
    cli = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert np.allclose(json.loads(cli.stdout)[0]["embedding"], want[0], atol=1e-4)
    from edgedistill.runtime import CausalLM, Sampling

    lm = expected["lm"]
    got = CausalLM.open(out / "lm.zip", threads=1).generate(lm["prompt"], Sampling(max_new_tokens=10))
    assert got.strip() == lm["text"].strip(), (got, lm["text"])
    cmd = ["edgedistill", "generate", "--bundle", str(out / "lm"), "--json", "--max-tokens", "10", lm["prompt"]]
    cli = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert json.loads(cli.stdout)["text"].strip() == lm["text"].strip()
    print("runtime smoke: ok (folder, zip, threads, CLI, ONNX causal LM; no torch in this venv)")


if __name__ == "__main__":
    {"make": make, "check": check}[sys.argv[1]](Path(sys.argv[2]))
