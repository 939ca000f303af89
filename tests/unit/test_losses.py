"""Each registered loss against hand-computed values (torchdistill-style numeric fixtures)."""


import pytest
import torch

from edgedistill.distill.losses import LOSSES, Outputs, get_loss, register_loss
from edgedistill.errors import RecipeError


def test_registry_has_the_spine_losses():
    assert {"cosine", "mse", "hidden_mse"} <= set(LOSSES)
    assert LOSSES["hidden_mse"].needs == {"hidden"}
    assert LOSSES["cosine"].needs == {"embedding"}


def test_cosine_loss_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    # row 0 orthogonal -> 1, row 1 parallel -> 0, mean 0.5
    assert LOSSES["cosine"].fn(Outputs(embedding=a), Outputs(embedding=b)).item() == pytest.approx(0.5)
    c = torch.tensor([[1.0, 0.0]])
    assert LOSSES["cosine"].fn(Outputs(embedding=c), Outputs(embedding=-c)).item() == pytest.approx(2.0)


def test_mse_sums_dimensions_and_averages_batch():
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    # rows: 1 + 4 = 5 and 9 -> mean 7
    assert LOSSES["mse"].fn(Outputs(embedding=a), Outputs(embedding=b)).item() == pytest.approx(7.0)


def test_hidden_mse_ignores_padding_and_averages_layers():
    mask = torch.tensor([[1, 1, 0]])
    s0 = torch.zeros(1, 3, 2)
    t0 = torch.zeros(1, 3, 2)
    t0[0, 0] = torch.tensor([1.0, 1.0])  # squared error 2 over 2 real tokens x 2 dims -> 0.5
    t0[0, 2] = torch.tensor([100.0, 100.0])  # padding: must not count
    s1 = torch.ones(1, 3, 2)
    t1 = torch.ones(1, 3, 2)  # layer 1 perfect -> 0
    s = Outputs(hidden={0: s0, 1: s1}, mask=mask)
    t = Outputs(hidden={0: t0, 1: t1}, mask=mask)
    assert LOSSES["hidden_mse"].fn(s, t).item() == pytest.approx((0.5 + 0.0) / 2)


def test_pair_similarity_compares_cosine_matrices_in_the_students_own_space():
    own = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # pair cosines 0, 1/sqrt2, 1/sqrt2
    teacher = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])  # pair cosines 1, 0, 0
    # squared differences 1, 1/2, 1/2, each pair twice among the 6 off-diagonal cells -> 2/3; the projected
    # embedding (here equal to the teacher's, which would give 0) is not what is compared
    got = LOSSES["pair_similarity"].fn(Outputs(embedding=teacher, own_embedding=own), Outputs(embedding=teacher))
    assert got.item() == pytest.approx(2 / 3)
    pair = LOSSES["pair_similarity"].fn
    assert pair(Outputs(embedding=own), Outputs(embedding=teacher)).item() == pytest.approx(2 / 3)
    assert LOSSES["pair_similarity"].fn(Outputs(embedding=own * 5), Outputs(embedding=own)).item() == pytest.approx(0)
    assert LOSSES["pair_similarity"].fn(Outputs(embedding=own[:1]), Outputs(embedding=teacher[:1])).item() == 0.0


def test_losses_are_differentiable():
    a = torch.randn(4, 8, requires_grad=True)
    b = torch.randn(4, 8)
    for name in ("cosine", "mse", "pair_similarity"):
        LOSSES[name].fn(Outputs(embedding=a), Outputs(embedding=b)).backward()
        assert a.grad is not None and torch.isfinite(a.grad).all()
        a.grad = None


def test_unknown_loss_is_a_recipe_error():
    with pytest.raises(RecipeError, match="unknown loss 'klx'.*cosine"):
        get_loss("klx")


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError):
        register_loss("cosine", needs=("embedding",))(lambda s, t: 0)
