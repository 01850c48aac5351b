"""Attention of one query block over one key/value block, returning the log-sum-exp, and its
backward: the local maths that ring attention repeats for every block of keys it receives.

Ring attention (LoongTrain, arXiv 2406.18485, section 3; docs/papers.md §5) computes a query
block's attention one key block at a time and merges the partial results by their log-sum-exp:
with out_i, lse_i the attention over key block i alone, lse = log sum_i exp(lse_i) and
out = sum_i exp(lse_i - lse) out_i, exactly the attention over all keys. The backward needs only
the final out and lse: P = exp(S - lse) is rebuilt per block, as FlashAttention-2 does.

On a CPU each block runs SDPA's fused flash kernel (`_scaled_dot_product_flash_attention_for_cpu`
and its backward, given the final out and lse as FlashAttention-2's backward is), with the block's
mask as an additive 0 / -inf mask (none where the block is all visible): it never holds the
block's score matrix and is ~5x faster per block than the matmuls (a fused kernel per block is
also how PyTorch's context-parallel ring works; docs/benchmarks.md compares the two).
Elsewhere, plain PyTorch in float32 (scores as a matmul with a boolean mask), exact on any
device; a GPU kernel that takes a mask and returns lse (memory-efficient SDPA) is not wired in
yet. Rows with no allowed key in a block get lse = -inf and a zero output, which the merge weighs
by exp(-inf) = 0.
"""

from __future__ import annotations

import torch

aten = torch.ops.aten


def attention_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, document_ids: torch.Tensor | None) -> torch.Tensor:
    """(B or 1, Tq, Tk) bool, True where query at global position q_pos may see key at k_pos:
    causal, and inside the same document when `document_ids` (B, T) gives the packing."""
    allowed = (q_pos[:, None] >= k_pos[None, :])[None]
    if document_ids is not None:
        allowed = allowed & (document_ids[:, q_pos, None] == document_ids[:, None, k_pos])
    return allowed


def _expand_kv(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """GQA: kv head j serves query heads j*g ... (j+1)*g-1."""
    return x.repeat_interleave(n_heads // x.shape[1], dim=1) if x.shape[1] != n_heads else x


def _reduce_kv(dx: torch.Tensor, n_kv_heads: int) -> torch.Tensor:
    B, H, T, D = dx.shape
    return dx.view(B, n_kv_heads, H // n_kv_heads, T, D).sum(2) if H != n_kv_heads else dx


def _finite(lse: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))


def _fused(q: torch.Tensor) -> bool:
    """Whether this block runs the fused kernel (a CPU tensor) or the matmuls."""
    return q.device.type == "cpu"


def _additive(allowed: torch.Tensor) -> torch.Tensor | None:
    """(B or 1, 1, Tq, Tk) float32, 0 where allowed and -inf elsewhere; None when all is allowed."""
    if bool(allowed.all()):
        return None
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill_(~allowed, float("-inf"))[:, None]


def _probabilities(q, k, allowed, lse, scale) -> torch.Tensor:
    scores = torch.matmul(q, _expand_kv(k, q.shape[1]).transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    if lse is None:
        lse = torch.logsumexp(scores, dim=-1)
    return torch.exp(scores - _finite(lse)[..., None]), lse


def block_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, H, Tq, D) over k, v (B, Hkv, Tk, D), float32 -> out (B, H, Tq, D), lse (B, H, Tq)."""
    if _fused(q):
        H = q.shape[1]
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(
            q.contiguous(), _expand_kv(k, H).contiguous(), _expand_kv(v, H).contiguous(),
            attn_mask=_additive(allowed), scale=scale)
        return out, lse.masked_fill(~allowed.any(-1)[:, None], float("-inf"))  # the kernel gives 0 there
    p, lse = _probabilities(q, k, allowed, None, scale)
    return torch.matmul(p, _expand_kv(v, q.shape[1])), lse


def block_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dout: torch.Tensor, out: torch.Tensor,
                   delta: torch.Tensor, lse: torch.Tensor, allowed: torch.Tensor, scale: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of this block's share of the attention, given the *final* out and lse of the query
    rows and delta = rowsum(dout * out): dq (B, H, Tq, D), dk, dv (B, Hkv, Tk, D)."""
    if _fused(q):
        H, n_kv = q.shape[1], k.shape[1]
        dq, dk, dv = aten._scaled_dot_product_flash_attention_for_cpu_backward(
            dout.contiguous(), q.contiguous(), _expand_kv(k, H).contiguous(), _expand_kv(v, H).contiguous(),
            out.contiguous(), lse.contiguous(), 0.0, False, attn_mask=_additive(allowed), scale=scale)
        return dq, _reduce_kv(dk, n_kv), _reduce_kv(dv, n_kv)
    p, _ = _probabilities(q, k, allowed, lse, scale)
    dv = torch.matmul(p.transpose(-1, -2), dout)
    dp = torch.matmul(dout, _expand_kv(v, q.shape[1]).transpose(-1, -2))
    ds = p * (dp - delta[..., None])
    dq = torch.matmul(ds, _expand_kv(k, q.shape[1])) * scale
    dk = torch.matmul(ds.transpose(-1, -2), q) * scale
    return dq, _reduce_kv(dk, k.shape[1]), _reduce_kv(dv, k.shape[1])


def merge(acc: tuple[torch.Tensor, torch.Tensor] | None, out: torch.Tensor, lse: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two partial attentions of the same query rows by their log-sum-exp."""
    if acc is None:
        return out, lse
    acc_out, acc_lse = acc
    new = torch.logaddexp(acc_lse, lse)
    safe = _finite(new)[..., None]
    return acc_out * torch.exp(acc_lse[..., None] - safe) + out * torch.exp(lse[..., None] - safe), new
