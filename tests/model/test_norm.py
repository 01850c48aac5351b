"""RMSNorm's hand-written backward (`lmforge.model.norm`) equals autograd through the formula, and
the numerical derivative (gradcheck), in every dtype combination the trainer makes."""

import pytest
import torch

from lmforge.model.norm import rms_norm


def _formula(x, w, eps):
    h = x.to(torch.promote_types(x.dtype, torch.float32))
    return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _inputs(dtype=torch.float32, w_dtype=None, seed=0, shape=(3, 5, 16)):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 3).to(dtype).requires_grad_()
    w = (1 + 0.3 * torch.randn(shape[-1], generator=g)).to(w_dtype or dtype).requires_grad_()
    gy = torch.randn(shape, generator=g)
    return x, w, gy


def test_gradcheck_float64():
    x, w, _ = _inputs(torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: rms_norm(a, b, 1e-6), (x, w))


@pytest.mark.parametrize("needs", ["both", "x", "w"])
def test_equals_autograd_through_the_formula_fp32(needs):
    x, w, gy = _inputs()
    x.requires_grad_(needs in ("both", "x"))
    w.requires_grad_(needs in ("both", "w"))
    wants = [t for t in (x, w) if t.requires_grad]
    y = rms_norm(x, w, 1e-5)
    ref = _formula(x, w, 1e-5)
    assert (y - ref).abs().max().item() <= 1e-6
    for a, b in zip(torch.autograd.grad(y, wants, gy), torch.autograd.grad(ref, wants, gy)):
        assert (a - b).abs().max().item() <= 1e-5 * b.abs().max().item()


@pytest.mark.parametrize("w_dtype", [torch.bfloat16, torch.float32])
def test_bf16_activations_keep_the_formula_dtypes(w_dtype):
    """bf16 x with a bf16 weight (FSDP mixed precision) or an fp32 one (autocast keeps parameters
    fp32): output, and each gradient, in the dtype autograd through the formula gives."""
    x, w, gy = _inputs(torch.bfloat16, w_dtype, seed=1)
    y, ref = rms_norm(x, w, 1e-5), _formula(x, w, 1e-5)
    assert y.dtype == ref.dtype
    assert torch.allclose(y.float(), ref.float(), rtol=1e-2, atol=1e-2)
    got = torch.autograd.grad(y, (x, w), gy.to(y.dtype))
    want = torch.autograd.grad(ref, (x, w), gy.to(ref.dtype))
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        assert (a.float() - b.float()).abs().max().item() <= 1e-2 * b.float().abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_without_grad_is_the_formula_bit_for_bit(dtype):
    x, w, _ = _inputs(dtype, seed=2)
    with torch.no_grad():
        assert torch.equal(rms_norm(x, w, 1e-5), _formula(x, w, 1e-5))


def test_without_grad_mixed_dtypes_is_the_formula():
    x, w, _ = _inputs(torch.bfloat16, torch.float32, seed=3)
    with torch.no_grad():
        y, ref = rms_norm(x, w, 1e-5), _formula(x, w, 1e-5)
    assert y.dtype == ref.dtype == torch.float32 and torch.equal(y, ref)
