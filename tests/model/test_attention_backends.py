"""The attention backends for packed rows (sdpa, flex, flash) agree with each document attended
alone, and each is called as its kernel documents; the GPU kernels' glue is checked on CPU."""

import math
import sys
import types

import pytest
import torch
from torch.nn.attention import varlen as torch_varlen

from lmforge.model import attention
from lmforge.model.attention import AttentionMask, attend, build_mask
from lmforge.train.parallel import has_cxx_compiler
from tests.helpers import tiny_model


def _available_backends(device):
    names = ["sdpa"]
    if device.type == "cuda":
        names.append("flex")
        if attention.flash_available():
            names.append("flash")
    return names


def _qkv_and_documents(device, dtype, Hkv=2):
    g = torch.Generator().manual_seed(0)
    B, Hq, T, D = 2, 4, 128, 32
    q, k, v = (torch.randn(B, h, T, D, generator=g).to(device, dtype) for h in (Hq, Hkv, Hkv))
    doc_ids = torch.tensor([[0] * 50 + [1] * 40 + [2] * 38, [0] * 100 + [1] * 28]).to(device)
    return q, k, v, doc_ids


def _per_document_reference(q, k, v, doc_ids):
    """Each document of each row attended alone with a plain causal mask."""
    ref = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for d in doc_ids[b].unique():
            idx = (doc_ids[b] == d).nonzero().flatten()
            ref[b, :, idx] = attend(q[b:b + 1, :, idx], k[b:b + 1, :, idx], v[b:b + 1, :, idx],
                                    AttentionMask("causal"))[0]
    return ref


def test_all_available_backends_agree():
    """Outputs and gradients of every backend this machine has (CPU: sdpa; CUDA: also flex, and
    flash on compute capability 8.0+) equal each document attended alone."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v, doc_ids = _qkv_and_documents(device, dtype)
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)

    def run(fn):
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves)
        out.backward(grad_out)
        return [out.detach().float()] + [t.grad.float() for t in leaves]

    ref = run(lambda q, k, v: _per_document_reference(q, k, v, doc_ids))
    tol = 3e-2 if dtype == torch.bfloat16 else 1e-5
    for name in _available_backends(device):
        mask = build_mask(doc_ids, q.shape[2], name, device, dtype)
        got = run(lambda q, k, v: attend(q, k, v, mask))
        for what, a, b in zip(("out", "dq", "dk", "dv"), got, ref):
            assert (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item()), (name, what)


def _varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False):
    """flash-attn's varlen contract, written out: q (total, Hq, D) and k, v (total, Hkv, D) hold the
    sequences back to back at the int32 offsets `cu_seqlens`; query head h reads kv head
    h // (Hq / Hkv). Asserts the contract, so a call that flash-attn would refuse fails here too."""
    assert q.dim() == k.dim() == v.dim() == 3 and q.shape[0] == k.shape[0] and q.shape[1] % k.shape[1] == 0
    assert all(t.stride(-1) == 1 for t in (q, k, v)), "flash-attn needs a contiguous last dimension"
    assert cu_seqlens_q.dtype == torch.int32 and torch.equal(cu_seqlens_q, cu_seqlens_k) and causal
    lengths = cu_seqlens_q[1:] - cu_seqlens_q[:-1]
    assert cu_seqlens_q[0] == 0 and cu_seqlens_q[-1] == q.shape[0] and (lengths > 0).all()
    assert max_seqlen_q == max_seqlen_k == int(lengths.max()) and isinstance(max_seqlen_q, int)
    group = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    for s, e in zip(cu_seqlens_q[:-1].tolist(), cu_seqlens_q[1:].tolist()):
        qs, ks, vs = q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1)
        ks, vs = ks.repeat_interleave(group, 0), vs.repeat_interleave(group, 0)
        scores = qs @ ks.transpose(1, 2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~torch.ones(e - s, e - s, dtype=torch.bool).tril(), float("-inf"))
        out[s:e] = (scores.softmax(-1) @ vs).transpose(0, 1)
    return out


def _torch_varlen_attn(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, *, window_size=(-1, -1), enable_gqa=False):
    """torch.nn.attention.varlen.varlen_attn's contract: causal is window_size (-1, 0), and GQA must
    be asked for."""
    assert window_size == (-1, 0) and enable_gqa == (q.shape[1] != k.shape[1])
    return _varlen_attention(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, causal=True)


@pytest.mark.parametrize("kernel", ["flash_attn", "torch"])
@pytest.mark.parametrize("kv_heads", [2, 4])
def test_flash_backend_calls_the_varlen_kernel_as_documented(monkeypatch, kernel, kv_heads):
    """The flash backend's glue (layout, cu_seqlens, GQA heads) checked on CPU against the documented
    contract of each varlen kernel, with a reference kernel standing in for the CUDA one."""
    if kernel == "flash_attn":
        monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_varlen_func=_varlen_attention))
    else:
        monkeypatch.setattr(torch_varlen, "varlen_attn", _torch_varlen_attn)
    monkeypatch.setattr(attention, "varlen_kernel", lambda: kernel)
    monkeypatch.setattr(attention, "flash_available", lambda: True)
    q, k, v, doc_ids = _qkv_and_documents(torch.device("cpu"), torch.float32, kv_heads)
    mask = build_mask(doc_ids, q.shape[2], "flash", torch.device("cpu"), torch.bfloat16)
    assert mask.cu_seqlens.tolist() == [0, 50, 90, 128, 228, 256]
    out = attend(q, k, v, mask)
    assert (out - _per_document_reference(q, k, v, doc_ids)).abs().max().item() <= 1e-5
    # Rows without documents: SDPA's causal kernel, flash attention itself on such a GPU.
    assert build_mask(None, q.shape[2], "flash", torch.device("cpu"), torch.bfloat16).backend == "causal"


def test_flash_is_chosen_only_for_half_precision(monkeypatch):
    monkeypatch.setattr(attention, "flash_available", lambda: True)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert attention.resolve_backend("auto", cuda, torch.bfloat16) == "flash"
    assert attention.resolve_backend("auto", cuda, torch.float32) == "flex"
    with pytest.raises(RuntimeError, match="fp16/bf16 only"):
        attention.resolve_backend("flash", cpu, torch.float32)


def _packed_ids(g, B, T):
    """Rows of 1-6 documents with random boundaries: ids 0, 0, .., 1, 1, .. as lmforge packs."""
    ids = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        cuts = torch.randint(1, max(T, 2), (int(torch.randint(0, 6, (1,), generator=g)),), generator=g)
        ids[b, cuts[cuts < T]] = 1
    return ids.cumsum(1)


def _create_block_mask(doc_ids):
    from torch.nn.attention.flex_attention import create_block_mask

    def document_causal(b, h, q_idx, kv_idx):
        return (doc_ids[b, q_idx] == doc_ids[b, kv_idx]) & (q_idx >= kv_idx)

    return create_block_mask(document_causal, doc_ids.shape[0], None, *doc_ids.shape[1:] * 2, device="cpu")


def _block_tables(bm):
    """(partial, full) dense (B, 1, nq, nkv) block tables of a BlockMask."""
    n = bm.kv_indices.shape[-1]
    tables = []
    for num, idx in ((bm.kv_num_blocks, bm.kv_indices), (bm.full_kv_num_blocks, bm.full_kv_indices)):
        keep = torch.arange(n) < num[..., None]
        table = torch.zeros(*num.shape, n + 1, dtype=torch.bool)
        table.scatter_(-1, torch.where(keep, idx.long(), n), True)
        tables.append(table[..., :n])
    return tables


def test_flex_block_mask_equals_create_block_mask():
    """Built from per-block id ranges, never the T x T mask, yet the same block table, ragged tail
    included, for the packed rows lmforge trains on."""
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        B, T = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 700, (1,), generator=g))
        ids = _packed_ids(g, B, T)
        ours, ref = attention._flex_block_mask(ids), _create_block_mask(ids)
        for a, b in zip(_block_tables(ours), _block_tables(ref)):
            assert torch.equal(a, b), (B, T)
        assert torch.equal(ours.q_num_blocks, ref.q_num_blocks)  # the backward's transposed view


def test_flex_block_mask_covers_any_document_ids():
    """Ids that repeat out of order: full blocks stay exact, partial ones may only be extra."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 3, (2, 400), generator=g).repeat_interleave(50, 1)[:, :400]
    (ours_p, ours_f), (ref_p, ref_f) = _block_tables(attention._flex_block_mask(ids)), _block_tables(
        _create_block_mask(ids))
    assert torch.equal(ours_f, ref_f) and (ours_p | ~ref_p).all()


def test_flash_backend_refuses_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("GPU machine: flash may be available")
    with pytest.raises(RuntimeError, match="compute capability 8.0"):
        build_mask(torch.zeros(1, 4, dtype=torch.long), 4, "flash", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="GPU machine: test_all_available_backends_agree runs flex")
@pytest.mark.skipif(not has_cxx_compiler(),
                    reason="FlexAttention on CPU is compiled by inductor, which needs a C++ compiler")
def test_flex_backend_forward_on_cpu_equals_sdpa():
    """FlexAttention has no backward on CPU, but its compiled forward runs there: the block mask
    built from document ids must give the model the same logits as the dense SDPA mask."""
    model = tiny_model(seed=7, ratio=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, model.cfg.vocab_size, (2, 300), generator=g)  # 3 blocks, the last ragged
    doc_ids = torch.tensor([[0] * 20 + [1] * 170 + [2] * 110, [0] * 300])
    with torch.no_grad():
        dense = model(x, document_ids=doc_ids)
        model.cfg.attn_backend = "flex"
        flex = model(x, document_ids=doc_ids)
    assert (flex - dense).abs().max().item() <= 1e-5


def test_sdpa_takes_the_causal_kernel_when_every_row_lies_in_one_document():
    """Rows cut from one long document (the Shakespeare plays) need no dense mask: the causal kernel
    gives the same outputs and gradients; a row with a boundary keeps the dense mask."""
    q, k, v, _ = _qkv_and_documents(torch.device("cpu"), torch.float32)
    one_doc = torch.tensor([[3] * 128, [7] * 128])
    mask = build_mask(one_doc, q.shape[2], "sdpa", torch.device("cpu"), torch.float32)
    assert mask.backend == "causal" and mask.dense is None
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(1))

    def run(fn):
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves)
        out.backward(grad_out)
        return [out.detach()] + [t.grad for t in leaves]

    T = q.shape[2]
    dense = AttentionMask("dense", dense=torch.ones(T, T, dtype=torch.bool).tril().expand(2, 1, T, T))
    for a, b in zip(run(lambda q, k, v: attend(q, k, v, mask)), run(lambda q, k, v: attend(q, k, v, dense))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    split = one_doc.clone()
    split[1, 100:] = 8  # one boundary in one row
    assert build_mask(split, q.shape[2], "sdpa", torch.device("cpu"), torch.float32).backend == "dense"
