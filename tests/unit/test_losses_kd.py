"""The KD catalogue's losses against values computed by hand (torchdistill-style numeric fixtures)."""

import math

import pytest
import torch

from edgedistill.distill.losses import LOSSES, Outputs, get_loss
from edgedistill.errors import RecipeError

LN3 = math.log(3.0)
# KL([.75, .25] || [.5, .5]) and KL([.5, .5] || [.75, .25]), by hand:
KL_T_U = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
KL_U_T = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)


def logits(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_catalogue_is_registered_with_its_needs_and_params():
    assert {"kd", "reverse_kl", "jsd", "hard_ce", "label_smoothing", "sorted_prob", "fitnets", "attention_kl",
            "value_relation"} <= set(LOSSES)
    assert LOSSES["kd"].needs == {"logits"} and LOSSES["kd"].params == ("temperature",)
    assert LOSSES["hard_ce"].needs == {"labels"}
    assert LOSSES["attention_kl"].needs == {"qkv"}


def test_unknown_loss_lists_the_catalogue():
    with pytest.raises(RecipeError, match="unknown loss 'kld'.*attention_kl.*kd.*sorted_prob"):
        get_loss("kld")


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_is_kl_teacher_to_student_times_t_squared(temperature):
    # teacher logits (T ln3, 0) soften to [.75, .25] at temperature T; the student is uniform
    s = Outputs(logits=logits([0.0, 0.0]))
    t = Outputs(logits=logits([temperature * LN3, 0.0]))
    assert LOSSES["kd"].fn(s, t, temperature=temperature).item() == pytest.approx(KL_T_U * temperature**2, rel=1e-5)
    assert LOSSES["reverse_kl"].fn(s, t, temperature=temperature).item() == pytest.approx(
        KL_U_T * temperature**2, rel=1e-5)
    assert LOSSES["kd"].fn(t, t, temperature=temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_averages_over_the_batch():
    s = Outputs(logits=logits([0.0, 0.0], [LN3, 0.0]))
    t = Outputs(logits=logits([LN3, 0.0], [LN3, 0.0]))
    assert LOSSES["kd"].fn(s, t, temperature=1.0).item() == pytest.approx(KL_T_U / 2, rel=1e-5)


def test_jsd_by_hand():
    # P (teacher) = [.75, .25], Q (student) = [.5, .5]
    p, q = [0.75, 0.25], [0.5, 0.5]
    for beta in (0.5, 0.1):
        m = [beta * a + (1 - beta) * b for a, b in zip(p, q, strict=True)]
        want = beta * sum(a * math.log(a / c) for a, c in zip(p, m, strict=True)) + (1 - beta) * sum(
            b * math.log(b / c) for b, c in zip(q, m, strict=True))
        got = LOSSES["jsd"].fn(Outputs(logits=logits([0.0, 0.0])), Outputs(logits=logits([LN3, 0.0])),
                               temperature=1.0, jsd_beta=beta).item()
        assert got == pytest.approx(want, rel=1e-5)


def test_hard_ce_ignores_unlabelled_rows():
    s = Outputs(logits=logits([LN3, 0.0], [0.0, 0.0], [100.0, -100.0]), labels=torch.tensor([0, 1, -100]))
    # -ln .75 and -ln .5, mean; the unlabelled (and badly wrong) third row does not count
    assert LOSSES["hard_ce"].fn(s, Outputs()).item() == pytest.approx((-math.log(0.75) - math.log(0.5)) / 2)
    none = Outputs(logits=logits([1.0, 2.0]).requires_grad_(), labels=torch.tensor([-100]))
    zero = LOSSES["hard_ce"].fn(none, Outputs())
    assert zero.item() == 0.0 and zero.requires_grad


def test_label_smoothing_virtual_teacher():
    # smoothing 0.25 over 2 classes: virtual teacher [.75, .25] for label 0; uniform student
    s = Outputs(logits=logits([0.0, 0.0], [5.0, 5.0]), labels=torch.tensor([0, 1]))
    got = LOSSES["label_smoothing"].fn(s, Outputs(), temperature=2.0, smoothing=0.25).item()
    assert got == pytest.approx(KL_T_U * 4, rel=1e-5)  # both rows: KL([.75,.25] || [.5,.5]) x T^2


def test_sorted_prob_ignores_class_order_and_count():
    # teacher [.75, .25] vs student [.25, .75]: sorted they agree -> 0
    t = Outputs(logits=logits([LN3, 0.0]))
    assert LOSSES["sorted_prob"].fn(Outputs(logits=logits([0.0, LN3])), t, temperature=1.0).item() == pytest.approx(
        0.0, abs=1e-6)
    # a 3-class uniform student vs the 2-class teacher: |.75-1/3| + |.25-1/3| + |0-1/3| = 5/6
    s3 = Outputs(logits=logits([0.0, 0.0, 0.0]))
    assert LOSSES["sorted_prob"].fn(s3, t, temperature=1.0).item() == pytest.approx(5 / 6, rel=1e-5)


def test_fitnets_projects_and_masks():
    mask = torch.tensor([[1, 1, 0]])
    hs = torch.ones(1, 3, 2)
    ht = torch.zeros(1, 3, 3)
    ht[0, 0] = torch.tensor([2.0, 2.0, 2.0])
    ht[0, 2] = 100.0  # padding
    # projection: sum the two student features into each of 3 outputs -> every projected value is 2
    proj = lambda layer, h: h.sum(-1, keepdim=True).expand(*h.shape[:-1], 3)  # noqa: E731
    s = Outputs(hidden={0: hs}, mask=mask, projector=proj)
    # token 0 matches exactly, token 1 errs by 2 in 3 dims: (3 * 4) / (2 tokens * 3 dims) = 2
    assert LOSSES["fitnets"].fn(s, Outputs(hidden={0: ht})).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="width 2 != teacher width 3"):
        LOSSES["fitnets"].fn(Outputs(hidden={0: hs}, mask=mask), Outputs(hidden={0: ht}))


def _qkv(q, k, v):
    return tuple(torch.tensor(x, dtype=torch.float32).view(1, 1, -1, 1) for x in (q, k, v))


def test_attention_kl_by_hand_with_padding():
    mask = torch.tensor([[1, 1, 0]])
    # student: q.k = 0 everywhere -> uniform [.5, .5] over the two real keys
    s = Outputs(mask=mask, qkv={1: _qkv([1.0, 0.0, 9.0], [0.0, 0.0, 9.0], [0.0, 0.0, 0.0])})
    # teacher: q = 1, k = (ln3, 0) -> [.75, .25] for each real query; the padded key (9) gets no mass
    t = Outputs(qkv={1: _qkv([1.0, 1.0, 1.0], [LN3, 0.0, 9.0], [0.0, 0.0, 0.0])})
    assert LOSSES["attention_kl"].fn(s, t).item() == pytest.approx(KL_T_U, rel=1e-5)


def test_value_relation_by_hand():
    mask = torch.tensor([[1, 1]])
    s = Outputs(mask=mask, qkv={0: _qkv([0.0, 0.0], [0.0, 0.0], [0.0, 0.0])})
    # teacher v = (sqrt(ln3), 0): row 0 scores (ln3, 0) -> [.75, .25]; row 1 all 0 -> uniform (KL 0)
    t = Outputs(qkv={0: _qkv([0.0, 0.0], [0.0, 0.0], [math.sqrt(LN3), 0.0])})
    assert LOSSES["value_relation"].fn(s, t).item() == pytest.approx(KL_T_U / 2, rel=1e-5)


def test_logit_losses_give_finite_gradients():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3)
    labels = torch.tensor([0, 2, -100, 1])
    for name in ("kd", "reverse_kl", "jsd", "hard_ce", "label_smoothing", "sorted_prob"):
        entry = LOSSES[name]
        kw = {p: {"temperature": 2.0, "jsd_beta": 0.5, "smoothing": 0.1}[p] for p in entry.params}
        entry.fn(Outputs(logits=s, labels=labels), Outputs(logits=t), **kw).backward()
        assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0, name
        s.grad = None
