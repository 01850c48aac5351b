"""A ring block through the CPU flash kernel equals the float32 matmul path it replaces on a CPU.

`seqpar.blocks` computes each (query block, key block) pair with SDPA's fused CPU kernel and an
additive mask; the matmul path (kept for other devices) is the reference: output, lse (-inf for
rows with no visible key) and, given a final out and lse, dq, dk, dv, within 1e-5, for causal and
document masks, blocks all visible, rows and columns all masked, MHA and GQA, batch 1 and 2.
"""

import pytest
import torch

from lmforge.train.seqpar import blocks


def _masks(batch: int, tq: int, tk: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    causal = torch.ones(tq, tk, dtype=torch.bool).tril(tk - tq)[None]
    docs = torch.rand(batch, tq, tk, generator=gen) > 0.4
    docs[:, 2] = False  # a query row that sees nothing in this block
    docs[:, :, 3] = False
    return {"visible": torch.ones(1, tq, tk, dtype=torch.bool), "causal": causal, "documents": docs}


@pytest.mark.parametrize("batch, n_kv", [(1, 4), (2, 2), (2, 1)])
def test_fused_block_equals_matmul_block(monkeypatch, batch, n_kv):
    gen = torch.Generator().manual_seed(batch * 10 + n_kv)
    H, tq, tk, D, scale = 4, 12, 24, 8, 0.3
    q = torch.randn(batch, H, tq, D, generator=gen)
    k, v = (torch.randn(batch, n_kv, tk, D, generator=gen) for _ in range(2))
    dout = torch.randn(batch, H, tq, D, generator=gen)
    for name, allowed in _masks(batch, tq, tk, gen).items():
        results = {}
        for fused in (True, False):
            monkeypatch.setattr(blocks, "_fused", lambda _q, f=fused: f)
            out, lse = blocks.block_forward(q, k, v, allowed, scale)
            # the backward takes the final out and lse of the rows: here those of this block, with
            # a visible key added to every row as the whole ring guarantees (a token sees itself)
            final_out, final_lse = out, torch.logaddexp(lse, torch.zeros_like(lse))
            delta = (dout * final_out).sum(-1)
            grads = blocks.block_backward(q, k, v, dout, final_out, delta, final_lse, allowed, scale)
            results[fused] = (out, lse, *grads)
        for a, b in zip(results[True], results[False]):
            assert torch.equal(torch.isinf(a), torch.isinf(b)), name
            finite = torch.isfinite(b)
            assert (a[finite] - b[finite]).abs().max() <= 1e-5, name
