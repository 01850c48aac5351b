"""Packed rows: attention never crosses a document, positions restart, and all backends agree."""

import pytest
import torch

from lmforge.model.attention import AttentionMask, attend, build_mask, positions_from_documents
from tests.helpers import has_cxx_compiler, tiny_model


def test_positions_restart_per_document():
    docs = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2]])
    assert positions_from_documents(docs).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]


@pytest.mark.parametrize("ratio", [1, 2, 4])
def test_packed_row_equals_documents_run_alone(ratio):
    model = tiny_model(seed=ratio, ratio=ratio)
    g = torch.Generator().manual_seed(0)
    lengths = [7, 12, 5]
    docs = [torch.randint(0, model.cfg.vocab_size, (n,), generator=g) for n in lengths]
    row = torch.cat(docs)[None]
    doc_ids = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    with torch.no_grad():
        packed = model(row, document_ids=doc_ids)[0]
        alone = torch.cat([model(d[None])[0] for d in docs])
    assert (packed - alone).abs().max().item() <= 1e-5


def test_packed_batch_with_backward_on_cpu():
    model = tiny_model().train()
    x = torch.randint(0, model.cfg.vocab_size, (2, 16))
    doc_ids = torch.tensor([[0] * 10 + [1] * 6, [0] * 3 + [1] * 13])
    model(x, document_ids=doc_ids).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _available_backends(device):
    names = ["sdpa"]
    if device.type == "cuda":
        names.append("flex")
        try:
            import flash_attn  # noqa: F401

            names.append("flash")
        except ImportError:
            pass
    return names


def test_all_available_backends_agree():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    g = torch.Generator().manual_seed(0)
    B, Hq, Hkv, T, D = 2, 4, 2, 128, 32
    q, k, v = (torch.randn(B, h, T, D, generator=g).to(device, dtype) for h in (Hq, Hkv, Hkv))
    doc_ids = torch.tensor([[0] * 50 + [1] * 40 + [2] * 38, [0] * 128]).to(device)
    # Reference: each document separately with a plain causal mask.
    ref = torch.zeros_like(q)
    for b in range(B):
        for d in doc_ids[b].unique():
            idx = (doc_ids[b] == d).nonzero().flatten()
            ref[b, :, idx] = attend(q[b:b + 1, :, idx], k[b:b + 1, :, idx], v[b:b + 1, :, idx],
                                    AttentionMask("causal"))[0]
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    for name in _available_backends(device):
        out = attend(q, k, v, build_mask(doc_ids, T, name, device))
        assert (out.float() - ref.float()).abs().max().item() <= tol, name


def test_flash_backend_refuses_without_flash_attn():
    if torch.cuda.is_available():
        pytest.skip("GPU machine: flash may be available")
    with pytest.raises(RuntimeError, match="flash-attn"):
        build_mask(torch.zeros(1, 4, dtype=torch.long), 4, "flash", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="GPU machine: the backend test above runs flex")
@pytest.mark.skipif(not has_cxx_compiler(),
                    reason="FlexAttention on CPU is compiled by inductor, which needs a C++ compiler")
def test_flex_backend_forward_on_cpu_equals_sdpa():
    """FlexAttention has no backward on CPU, but its compiled forward runs there: the block mask
    built from document ids must give the model the same logits as the dense SDPA mask."""
    model = tiny_model(seed=7, ratio=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, model.cfg.vocab_size, (2, 48), generator=g)
    doc_ids = torch.tensor([[0] * 20 + [1] * 17 + [2] * 11, [0] * 48])
    with torch.no_grad():
        dense = model(x, document_ids=doc_ids)
        model.cfg.attn_backend = "flex"
        flex = model(x, document_ids=doc_ids)
    assert (flex - dense).abs().max().item() <= 1e-5
