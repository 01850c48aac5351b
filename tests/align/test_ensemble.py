"""Ensemble rules and the model soup against their definitions."""

import pytest
import torch

from lmforge.align.ensemble import combine, soup, standardise


def test_rules():
    s = torch.tensor([[1.0, 4.0], [3.0, 0.0], [2.0, 2.0]])  # 3 members x 2 answers
    assert torch.allclose(combine(s, "mean"), torch.tensor([2.0, 2.0]))
    assert torch.allclose(combine(s, "min"), torch.tensor([1.0, 0.0]))
    # same mean, the answer the members disagree on is penalised
    got = combine(s, "mean_minus_std", uncertainty=0.5)
    assert torch.allclose(got, torch.tensor([2.0 - 0.5 * 1.0, 2.0 - 0.5 * 2.0]))
    assert got[0] > got[1]
    with pytest.raises(ValueError, match="combine"):
        combine(s, "vote")


def test_standardise_puts_members_on_one_scale():
    s = torch.tensor([[0.0, 10.0, 20.0], [0.0, 0.1, 0.2]])
    z = standardise(s)
    assert torch.allclose(z[0], z[1]) and torch.allclose(z.mean(1), torch.zeros(2), atol=1e-6)


def test_soup_is_the_mean_and_refuses_other_architectures():
    a, b = {"w": torch.ones(2)}, {"w": torch.zeros(2)}
    assert torch.equal(soup([a, b])["w"], torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="other tensors"):
        soup([a, {"v": torch.ones(2)}])
