"""The fused, chunked output-projection loss (`linear_lm_loss`) equals the plain formula
(`lm_loss` over `F.linear` logits) in value and in every gradient, and the model uses it."""

import pytest
import torch
import torch.nn.functional as F

from lmforge.model.loss import IGNORE_INDEX, linear_lm_loss, lm_loss
from tests.helpers import tiny_model


def _inputs(seed=0, n=37, d=24, v=50):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, n, d, generator=g, requires_grad=True)
    w = (torch.randn(v, d, generator=g) * 0.5).requires_grad_()
    t = torch.randint(0, v, (3, n), generator=g)
    t[0, :5] = IGNORE_INDEX  # e.g. prompt tokens an SFT batch does not train on
    t[2, -3:] = IGNORE_INDEX
    return h, w, t


def _grads(loss, *xs):
    return torch.autograd.grad(loss, xs)


def _close(a, b, rel=1e-6):
    """fp32 agreement: summation order differs between the chunked and the plain form."""
    return abs(a - b) <= rel * max(1.0, abs(b))


@pytest.mark.parametrize("z_loss", [0.0, 2e-4, 0.5])
@pytest.mark.parametrize("chunk_rows", [1, 7, 10_000])  # one token per chunk, ragged chunks, one chunk
def test_fused_loss_equals_the_formula(z_loss, chunk_rows):
    h, w, t = _inputs()
    ref, ref_parts = lm_loss(F.linear(h, w), t, z_loss)
    got, parts = linear_lm_loss(h, w, t, z_loss, chunk_elements=chunk_rows * w.shape[0])
    assert _close(got.item(), ref.item())
    assert set(parts) == set(ref_parts)
    for k in parts:
        assert _close(parts[k].item(), ref_parts[k].item()) and not parts[k].requires_grad
    # A weighted loss, as the trainer's token-weighted gradient accumulation makes.
    for a, b in zip(_grads(got * 0.37, h, w), _grads(ref * 0.37, h, w)):
        assert (a - b).abs().max().item() <= 1e-6


def test_fused_loss_without_grad_and_when_everything_is_ignored():
    h, w, t = _inputs(seed=1)
    with torch.no_grad():
        loss, parts = linear_lm_loss(h, w, t, 2e-4, chunk_elements=5 * w.shape[0])
        ref, _ = lm_loss(F.linear(h, w), t, 2e-4)
    assert _close(loss.item(), ref.item()) and not loss.requires_grad
    loss, _ = linear_lm_loss(h, w, torch.full_like(t, IGNORE_INDEX))
    assert loss.item() == 0.0
    assert all(g.abs().max().item() == 0.0 for g in _grads(loss, h, w))


def test_fused_loss_refuses_a_second_backward():
    h, w, t = _inputs(seed=2)
    loss, _ = linear_lm_loss(h, w, t)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward called twice"):
        loss.backward()


def test_fused_loss_under_bf16_autocast_matches_autocast_linear():
    h, w, t = _inputs(seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref, _ = lm_loss(F.linear(h, w), t)
        got, _ = linear_lm_loss(h, w, t)
    assert abs(got.item() - ref.item()) <= 1e-3 * abs(ref.item())
    for a, b in zip(_grads(got, h, w), _grads(ref, h, w)):
        assert a.dtype == b.dtype == torch.float32
        assert (a - b).abs().max().item() <= 2e-2 * b.abs().max().item()


@pytest.mark.parametrize("norm_head", [False, True])
def test_model_loss_with_targets_equals_loss_of_its_logits(norm_head):
    model = tiny_model(seed=4, norm_head=norm_head).train()
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, model.cfg.vocab_size, (2, 17), generator=g)
    docs = torch.tensor([[0] * 9 + [1] * 8, [0] * 17])
    inputs, targets = x[:, :-1], x[:, 1:]
    loss, _ = model(inputs, document_ids=docs[:, :-1], targets=targets, z_loss=2e-4)
    fused = _grads(loss, *model.parameters())
    ref, _ = lm_loss(model(inputs, document_ids=docs[:, :-1]), targets, z_loss=2e-4)
    plain = _grads(ref, *model.parameters())
    assert _close(loss.item(), ref.item())
    for (name, _), a, b in zip(model.named_parameters(), fused, plain):
        assert (a - b).abs().max().item() <= 1e-6, name
