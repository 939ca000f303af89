import numpy as np
import pytest
import torch

from edgedistill.distill.teacher_cache import teacher_targets
from edgedistill.models.encode import pool
from edgedistill.models.loading import load_encoder
from edgedistill.models.teacher import TeacherRef

TEXTS = ["the movie was great", "a dull film", "this plot is really clumsy and the ending was painful", "so fun"]


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    model, tok = load_encoder(tiny_teacher)
    ref = TeacherRef(folder=tiny_teacher, weights=tiny_teacher / "model.safetensors", sha256="a" * 64, source="t")
    return model, tok, ref


def test_cached_outputs_match_a_direct_forward(teacher):
    model, tok, ref = teacher
    out = teacher_targets(model, tok, ref, TEXTS, 32, "mean", True, layers=[1, 4])
    for i, text in enumerate(TEXTS):
        feats = tok([text], return_tensors="pt")
        with torch.no_grad():
            o = model(**feats, output_hidden_states=True)
        emb = pool(o.last_hidden_state, feats["attention_mask"]).numpy()[0]
        assert np.allclose(out.embeddings[i], emb, atol=1e-5)
        for layer in (1, 4):
            h = out.hidden_for(i, layer)
            assert h.shape == (feats["input_ids"].shape[1], model.config.hidden_size)
            assert np.allclose(h, o.hidden_states[layer][0].numpy(), atol=2e-2)  # stored as fp16


def test_second_call_is_a_cache_hit_and_new_layers_are_added(teacher, monkeypatch):
    model, tok, ref = teacher
    first = teacher_targets(model, tok, ref, TEXTS, 32, "mean", True, layers=[1])
    calls = []
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    again = teacher_targets(model, tok, ref, TEXTS, 32, "mean", True, layers=[1])
    assert not calls and again.folder == first.folder
    assert np.array_equal(np.asarray(again.embeddings), np.asarray(first.embeddings))
    more = teacher_targets(model, tok, ref, TEXTS, 32, "mean", True, layers=[1, 2])
    assert calls and 2 in more.hidden and more.folder == first.folder


def test_changed_teacher_or_texts_never_read_a_stale_cache(teacher):
    model, tok, ref = teacher
    a = teacher_targets(model, tok, ref, TEXTS, 32, "mean", True)
    b = teacher_targets(model, tok, ref, TEXTS[:3] + ["changed"], 32, "mean", True)
    other = TeacherRef(folder=ref.folder, weights=ref.weights, sha256="b" * 64, source="t")
    c = teacher_targets(model, tok, other, TEXTS, 32, "mean", True)
    d = teacher_targets(model, tok, ref, TEXTS, 32, "cls", True)
    assert len({a.folder, b.folder, c.folder, d.folder}) == 4


def test_truncated_cache_file_is_recomputed(teacher):
    model, tok, ref = teacher
    a = teacher_targets(model, tok, ref, TEXTS, 32, "mean", True, layers=[3])
    good = np.array(a.embeddings)
    (a.folder / "embeddings.npy").write_bytes(b"garbage")
    b = teacher_targets(model, tok, ref, TEXTS, 32, "mean", True, layers=[3])
    assert np.allclose(np.asarray(b.embeddings), good)
