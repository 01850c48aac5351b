"""Context-parallel ring attention with zigzag chunks and packed documents (and Double-Ring).

LoongTrain, arXiv 2406.18485, sections 3.2-3.3 (docs/papers.md §5). Each rank of the context ring
holds T/C tokens: zigzag chunks c and 2C-1-c of the sequence (`layout.zigzag_indices`). Its
queries stay; the key/value blocks travel round the ring (`ringcomm`) and each received block's
partial attention is merged by log-sum-exp (`blocks.merge`). Of the 2 x 2 chunk pairs of a
(query, key) block only those with key chunk <= query chunk can be attended, which with zigzag
chunks is 2 pairs per step on every rank (3 on the diagonal): the causal load is balanced.

Packed documents: the mask of every block is built from the *global* positions of its query and
key tokens and the row's `document_ids` (B, T), so attention never crosses a document and the
result is exact however chunk boundaries fall; blocks with no allowed pair are skipped.

The backward is a custom autograd.Function (no autograd through send/recv): key/value blocks go
round the ring again, dq accumulates locally and each block's dk/dv goes round with it and back to
its owner (`ringcomm.GradientReturn`).

Selective Checkpoint++ (LoongTrain's name for it): when activation checkpointing recomputes a block in the
backward, the ring need not run again. A `KeptAttention` passed in receives the output and
log-sum-exp of the first forward; the recompute finds them there and only saves them (with the
recomputed q, k, v) for the backward, which needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmforge.train.seqpar.blocks import attention_mask, block_backward, block_forward, merge
from lmforge.train.seqpar.layout import zigzag_indices
from lmforge.train.seqpar.ringcomm import GradientReturn, Ring, kv_blocks


def chunk_pairs(ring: Ring, src: int, seq_len: int, document_ids: torch.Tensor | None, device):
    """For each half (zigzag chunk) of this rank's queries that may attend to key/value block
    `src`: (half, its rows, key length, mask). The attended key chunks are always a prefix (the
    first chunk, or both), so a key length says which; pairs with nothing allowed are left out."""
    C = ring.size
    half = seq_len // (2 * C)
    q_pos = zigzag_indices(seq_len, C, ring.index, device)
    k_pos = zigzag_indices(seq_len, C, src, device)
    q_chunks, k_chunks = (ring.index, 2 * C - 1 - ring.index), (src, 2 * C - 1 - src)
    for h, qc in enumerate(q_chunks):
        n_k = sum(kc <= qc for kc in k_chunks) * half
        if n_k == 0:
            continue
        rows = slice(h * half, (h + 1) * half)
        allowed = attention_mask(q_pos[rows], k_pos[:n_k], document_ids)
        if allowed.any():
            yield h, rows, n_k, allowed


def ring_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, document_ids: torch.Tensor | None,
                 ring: Ring, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Local queries (B, H, T/C, D) over the whole ring's keys and values (B, Hkv, T/C, D):
    out (B, H, T/C, D) float32 and lse (B, H, T/C)."""
    seq_len = q.shape[2] * ring.size
    qf = q.float()
    acc: list[tuple[torch.Tensor, torch.Tensor] | None] = [None, None]
    for _, _, src, kv in kv_blocks(torch.stack([k, v]), ring):  # sent in the input dtype
        kv = kv.float()
        for h, rows, n_k, allowed in chunk_pairs(ring, src, seq_len, document_ids, q.device):
            acc[h] = merge(acc[h], *block_forward(qf[:, :, rows], kv[0, :, :, :n_k], kv[1, :, :, :n_k],
                                                  allowed, scale))
    return torch.cat([a[0] for a in acc], dim=2), torch.cat([a[1] for a in acc], dim=2)


def ring_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                  lse: torch.Tensor, document_ids: torch.Tensor | None, ring: Ring, scale: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv (float32) of the local shard, given the final out and lse of `ring_forward`."""
    seq_len = q.shape[2] * ring.size
    qf, dout = q.float(), dout.float()
    delta = (dout * out).sum(-1)
    dq = torch.zeros_like(qf)
    grads = GradientReturn(ring)
    for o, j, src, kv in kv_blocks(torch.stack([k, v]), ring):
        kv = kv.float()
        dkv = torch.zeros_like(kv)  # float32: the sums of several ranks' shares travel in it
        for _, rows, n_k, allowed in chunk_pairs(ring, src, seq_len, document_ids, q.device):
            dq_b, dk_b, dv_b = block_backward(qf[:, :, rows], kv[0, :, :, :n_k], kv[1, :, :, :n_k],
                                              dout[:, :, rows], out[:, :, rows], delta[:, :, rows], lse[:, :, rows],
                                              allowed, scale)
            dq[:, :, rows] += dq_b
            dkv[0, :, :, :n_k] += dk_b
            dkv[1, :, :, :n_k] += dv_b
        grads.add(o, j, dkv)
    dkv = grads.result()
    return dq, dkv[0], dkv[1]


@dataclass(eq=False)
class KeptAttention:
    """One attention call's float32 output and lse, kept from its first forward (Selective
    Checkpoint++); empty until that forward has run."""

    out: torch.Tensor | None = None
    lse: torch.Tensor | None = None


class _RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, document_ids, ring: Ring, scale: float, kept: KeptAttention | None):
        if kept is not None and kept.out is not None:  # a checkpoint's recompute: reuse, don't rerun the ring
            out, lse = kept.out, kept.lse
        else:
            out, lse = ring_forward(q, k, v, document_ids, ring, scale)
            if kept is not None:
                kept.out, kept.lse = out, lse
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.document_ids, ctx.ring, ctx.scale = document_ids, ring, scale
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ring_backward(dout, q, k, v, out, lse, ctx.document_ids, ctx.ring, ctx.scale)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, document_ids: torch.Tensor | None,
                   ring: Ring, scale: float | None = None, kept: KeptAttention | None = None) -> torch.Tensor:
    """Causal attention of this rank's zigzag queries over the ring's keys and values.

    q (B, H, T/C, D), k and v (B, Hkv, T/C, D) hold chunks (c, 2C-1-c) of the sequence, c this
    rank's ring index; `document_ids` (B, T) are the whole rows' ids (None: one document).
    `kept`: filled by the first call, reused (the ring not run) by a recompute of the same call."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return _RingAttention.apply(q, k, v, document_ids, ring, scale, kept)
