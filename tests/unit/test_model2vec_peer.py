"""benchmarks/model2vec_peer.py: a Model2Vec folder becomes a bundle that computes Model2Vec's embedding,
benched like any model; the headline's vs_model2vec block. (No model2vec install needed: the folder is
written here in Model2Vec's save format.)"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark



def _load():
    return load_benchmark("model2vec_peer")


@pytest.fixture(scope="module")
def peer():
    return _load()


def fake_model2vec(tiny_teacher: Path, folder: Path, dims: int = 8) -> Path:
    """What Model2Vec's save_pretrained writes: fp16 table, config, tokenizer.json, plus our distill_info."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    vocab = json.loads((tiny_teacher / "tokenizer.json").read_text())["model"]["vocab"]
    table = np.random.default_rng(0).normal(size=(len(vocab), dims)).astype(np.float16)
    save_file({"embeddings": table}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"normalize": True, "hidden_dim": dims}))
    shutil.copyfile(tiny_teacher / "tokenizer.json", folder / "tokenizer.json")
    (folder / "distill_info.json").write_text(json.dumps({"model2vec": "test", "pca_dims": dims, "seconds": 0}))
    return folder


def test_bundle_computes_the_masked_mean_of_table_rows(peer, tiny_teacher, tmp_path):
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    from edgedistill.bench.kinds import detect
    from edgedistill.models.encode import batched_embed
    from edgedistill.models.loading import load_tokenizer
    from edgedistill.measure.runners import load

    m2v = fake_model2vec(tiny_teacher, tmp_path / "m2v")
    bundle = peer.to_bundle(m2v, tiny_teacher, tmp_path / "bundle", max_length=32)
    src = detect(bundle)  # a verified bundle, run by onnxruntime
    assert src.backend == "onnxruntime" and src.quantization == "fp16-table" and src.normalize is True
    texts = ["the film was great", "a dull and boring plot that goes on", "so"]
    embed = load(src.backend, src.model_file, 1, "mean", True).embed
    got = batched_embed(embed, load_tokenizer(bundle), texts, 32, batch_size=2)
    # Model2Vec's own rule: tokens without special tokens, mean of their rows, L2-normalised
    table = load_file(str(m2v / "model.safetensors"))["embeddings"].astype(np.float32)
    tok = Tokenizer.from_file(str(m2v / "tokenizer.json"))
    want = np.stack([table[tok.encode(t, add_special_tokens=False).ids].mean(0) for t in texts])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_missing_venv_is_a_clear_error(peer, tmp_path):
    with pytest.raises(FileNotFoundError, match="no Model2Vec venv"):
        peer.distil(tmp_path, tmp_path / "out", python=tmp_path / "nope" / "python")


def test_versus_block(peer):
    def model(name, acc, se, p50, size, rho):
        return {"name": name, "size_bytes": size, "latency": {"2": {"p50_ms": p50}},
                "quality": {"probe_accuracy": acc, "probe_accuracy_se": se, "spearman_vs_teacher": rho}}

    report = {"settings": {"threads": [2, 1]},
              "models": [model("ours", 0.83, 0.008, 2.4, 15e6, 0.8), model("m2v", 0.78, 0.009, 0.1, 15e6, 0.7)]}
    v = peer.versus(report, "ours", "m2v")
    assert v["quality_delta"] == pytest.approx(5.0) and v["quality_delta_se"] == pytest.approx(100 * (0.008 ** 2 +
                                                                                                  0.009 ** 2) ** 0.5)
    assert v["quality_delta_beyond_one_se"] is True and v["latency_ratio"] == pytest.approx(24.0)
    assert v["spearman_vs_teacher"] == {"ours": 0.8, "model2vec": 0.7} and v["size_ratio"] == 1.0


def test_headline_script_imports_with_the_peer(monkeypatch):
    mod = load_benchmark("headline", monkeypatch=monkeypatch)
    names = {"student": "s", "teacher_int8": "t8", "minilm": "mini", "model2vec": "m2v"}
    head = {"vs_teacher": {"s": {"size_ratio": 28, "latency_p50_speedup": 50, "quality_retention": 0.92},
                           "m2v": {"size_ratio": 28, "latency_p50_speedup": 900, "quality_retention": 0.85}}}
    lines = mod._verdict(head, names)
    assert any(line.startswith("- vs m2v: the distilled student is better on size_ratio, quality_retention and "
                               "worse on latency_p50_speedup") for line in lines), lines
    sys.modules.pop("model2vec_peer", None)


def test_headline_verdict_says_when_the_speed_up_is_noisy(monkeypatch):
    mod = load_benchmark("headline", monkeypatch=monkeypatch)
    names = {"student": "s"}
    head = {"size_ratio": 30.0, "latency_p50_speedup": 49.3, "quality_retention": 0.93, "latency_noisy": True,
            "vs_teacher": {"s": {"latency_p50_speedup_rounds": [47.1, 58.6, 49.3]}}}
    lines = mod._verdict(head, names)
    assert "- latency_p50_speedup: 49.3x (goal >= 20x): met; flagged noisy (per-round ratios 47.1-58.6x)" in lines[1]
    assert "noisy" not in lines[0] and lines[2].endswith("NOT met")
    assert "noisy" not in mod._verdict({**head, "latency_noisy": False}, names)[1]
    sys.modules.pop("model2vec_peer", None)


def test_headline_attach_qad_stores_the_block_with_retention(monkeypatch, tmp_path):
    """--attach-qad: a finished qad.py run becomes headline.qad (retention vs the stored teacher probe) and a
    table in headline.md; the rest of both files is kept."""
    import json

    mod = load_benchmark("headline", monkeypatch=monkeypatch)
    results = tmp_path / "results"
    results.mkdir()
    report = {"headline": {"teacher": {"probe_accuracy": 0.9}, "size_ratio": 34.8, "qad": {"skipped": "x"}},
              "headline_models": {"s": "student"}, "verdict": ["- size_ratio: met"], "wall_seconds_end_to_end": 60.0,
              "command": "python benchmarks/headline.py", "distill": {"recipe": {"name": "headline"}, "steps": 6000}}
    (results / "headline.json").write_text(json.dumps(report))
    (results / "headline.md").write_text("# Bench\n\nthe table\n\n## Models\n\n- old\n")
    variant = {"val_spearman_vs_teacher": 0.6, "distill_seconds": 600.0}
    qad = {"steps": 3000, "export_scheme": "int8-dynamic", "command": "python benchmarks/qad.py",
           "ptq": {"qat": "none", "probe_test_accuracy": 0.81, **variant},
           "qad": {"qat": "int8", "probe_test_accuracy": 0.828, **variant}}
    (tmp_path / "qad.json").write_text(json.dumps(qad))
    monkeypatch.setattr(mod, "HERE", tmp_path)
    with pytest.raises(SystemExit, match="not a qad.py run of the headline recipe 'headline'"):
        mod.attach_qad(tmp_path / "qad.json")  # no PTQ arm record beside it
    (tmp_path / "ptq" / "student").mkdir(parents=True)
    (tmp_path / "ptq" / "student" / "distill.json").write_text(json.dumps({"recipe": {"name": "quickstart"}}))
    with pytest.raises(SystemExit, match="names 'quickstart'"):
        mod.attach_qad(tmp_path / "qad.json")
    assert json.loads((results / "headline.json").read_text())["headline"]["qad"] == {"skipped": "x"}
    (tmp_path / "ptq" / "student" / "distill.json").write_text(json.dumps({"recipe": {"name": "headline"}}))
    block = mod.attach_qad(tmp_path / "qad.json", note="One core each.")
    assert block["retention"] == {"ptq": pytest.approx(0.9), "qad": pytest.approx(0.92)}
    stored = json.loads((results / "headline.json").read_text())
    assert stored["headline"]["qad"]["retention"]["qad"] == pytest.approx(0.92)
    assert stored["headline"]["size_ratio"] == 34.8 and "measured" in stored["headline"]["qad"]
    md = (results / "headline.md").read_text()
    assert md.startswith("# Bench\n\nthe table\n") and "- old" not in md and "- `s`: student" in md
    assert "| QAD (qat = 'int8') | 82.8% | 92.0% | 0.6000 | 10.0 min |" in md
    assert "3000 steps each (the headline student above trained 6000)" in md and "One core each." in md
    sys.modules.pop("model2vec_peer", None)
