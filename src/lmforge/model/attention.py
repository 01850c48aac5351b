"""Causal attention over packed documents, with three interchangeable backends.

InternEvo trains on rows that hold several documents back to back and runs FlashAttention's
varlen kernel over `cu_seqlens` so that attention never crosses a document boundary (InternLM2
report, arXiv 2403.17297, section 4.1; docs/papers.md §2). Here a row's documents are given by
`document_ids` (B, T): tokens with the same id in a row form one document; positions restart at
each document.

Backends, all computing the same block-diagonal causal attention:
- "sdpa": PyTorch scaled_dot_product_attention with a dense boolean mask. Runs everywhere,
  CPU included, with backward. Without documents, or when every row lies inside one document, it
  uses the plain causal kernel.
- "flex": FlexAttention with a block mask decided per 128 x 128 tile from the id ranges of its
  blocks, never from the T x T mask (GPU; sparse, so packed rows cost only the blocks that are
  attended). No backward on CPU.
- "flash": FlashAttention-2's varlen kernel over cu_seqlens (CUDA GPUs of compute capability 8.0
  and up): the flash-attn package's when it is installed, else the copy that PyTorch's CUDA builds
  ship (`torch.nn.attention.varlen.varlen_attn`, with backward), so no extra install is needed.
  Rows without documents go to SDPA's causal kernel, which is the same flash kernel on such GPUs.
"auto" picks flash (when the forward computes in fp16/bf16, the only dtypes the kernel takes),
then flex on CUDA, and sdpa otherwise.

The mask is built once per forward pass (`build_mask`) and shared by every layer.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AttentionMask:
    """What every attention layer of one forward pass needs to know about the batch."""

    backend: str  # "causal", "full" (no mask: decoding), "dense", "flex", "flash" or "segments"
    dense: torch.Tensor | None = None  # (B, 1, T, S) bool, True where attention is allowed
    block_mask: object | None = None  # FlexAttention BlockMask
    cu_seqlens: torch.Tensor | None = None  # (n_docs + 1,) int32 offsets into the flattened batch
    max_seqlen: int = 0
    # "segments": one row of several sequences back to back, each attending to its own keys only
    # (a batch of prompts packed without padding): (query start, query count, key start, key count);
    # a segment's queries are the last of its keys (causal, aligned to the end).
    segments: list[tuple[int, int, int, int]] | None = None
    # Where each key's predecessor in its sequence is, for smeared keys (lmforge.model.model.smear_keys):
    # None (key i - 1, except at 0), bool (B, S) (True: key i - 1) or long (B, S) (its index, -1: none).
    key_prev: torch.Tensor | None = None


def positions_from_documents(document_ids: torch.Tensor) -> torch.Tensor:
    """Position of each token inside its document: 0, 1, 2, ... restarting at each new document."""
    B, T = document_ids.shape
    idx = torch.arange(T, device=document_ids.device).expand(B, T)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    start_of = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - start_of


@functools.cache
def varlen_kernel() -> str:
    """Which FlashAttention-2 varlen kernel the flash backend calls: "flash_attn" (the package) or
    "torch" (torch.nn.attention.varlen, in the CUDA builds of the torch lmforge requires). Looked up
    once per process: every attention layer of every forward asks."""
    return "flash_attn" if importlib.util.find_spec("flash_attn") is not None else "torch"


@functools.cache
def flash_available() -> bool:
    """A CUDA GPU that FlashAttention-2 runs on: Ampere (compute capability 8.0) or newer."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


HALF_DTYPES = (torch.float16, torch.bfloat16)


def resolve_backend(name: str, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> str:
    """The backend that `name` means on `device` for a forward computing in `dtype`, or a clear
    error if it cannot run there."""
    if name == "auto":
        if device.type == "cuda" and dtype in HALF_DTYPES and flash_available():
            return "flash"
        return "flex" if device.type == "cuda" else "sdpa"
    if name == "flash" and not flash_available():
        raise RuntimeError("attn_backend='flash' needs a CUDA GPU of compute capability 8.0 or newer "
                           "(FlashAttention-2); use attn_backend='auto' or 'sdpa'")
    if name == "flash" and dtype not in HALF_DTYPES:
        raise RuntimeError(f"attn_backend='flash': flash-attn computes in fp16/bf16 only and this forward "
                           f"runs in {dtype}; set train.dtype=bfloat16, or attn_backend='auto' or 'flex'")
    return name


def build_mask(document_ids: torch.Tensor | None, seq_len: int, backend: str,
               device: torch.device, dtype: torch.dtype = torch.bfloat16) -> AttentionMask:
    """The attention mask for a batch of packed rows (None: one document per row); `dtype` is the
    dtype attention computes in."""
    backend = resolve_backend(backend, device, dtype)
    if document_ids is None:
        return AttentionMask("causal")  # SDPA's causal kernel: on a GPU, flash attention itself
    if backend == "sdpa":
        if bool((document_ids == document_ids[:, :1]).all()):
            # every row inside one document (a long one, cut into rows): the causal kernel skips the
            # blocks above the diagonal and reads no mask, where a dense mask costs every block
            return AttentionMask("causal")
        same_doc = document_ids[:, :, None] == document_ids[:, None, :]
        causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
        return AttentionMask("dense", dense=(same_doc & causal)[:, None])
    if backend == "flex":
        return AttentionMask("flex", block_mask=_flex_block_mask(document_ids))
    return _varlen_mask(document_ids)


def _varlen_mask(document_ids: torch.Tensor) -> AttentionMask:
    B, T = document_ids.shape
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    offsets = torch.nonzero(starts.flatten()).flatten()
    cu = torch.cat([offsets, offsets.new_tensor([B * T])]).to(torch.int32)
    return AttentionMask("flash", cu_seqlens=cu, max_seqlen=int((cu[1:] - cu[:-1]).max()))


FLEX_BLOCK = 128  # FlexAttention's default tile: one block-mask entry per 128 x 128 scores


def _flex_block_mask(document_ids: torch.Tensor):
    """FlexAttention's BlockMask for document-causal attention, built block by block.

    `create_block_mask` evaluates the mask function at all T x T positions (T^2 int64 gathers: 8 GiB
    per row at the 32k long-context stage). Here each 128-token block is reduced to the smallest and
    largest document id it holds, and the (T/128)^2 block table is decided from those alone:
    - a block pair is *full* (no mask needed) when the kv block lies wholly before the q block and
      both hold nothing but the same one document;
    - it is *partial* (the mask function is applied inside it) when it is causal-reachable and the
      two id ranges overlap; otherwise it is skipped.
    For rows whose ids never decrease (how `lmforge` packs) this is exactly `create_block_mask`'s
    table; for any other ids it can only mark extra blocks partial, which costs time, not accuracy.
    """
    from torch.nn.attention.flex_attention import BlockMask

    B, T = document_ids.shape
    n = -(-T // FLEX_BLOCK)
    pad = n * FLEX_BLOCK - T
    # The ragged last block is padded with its own last id, which leaves its id range unchanged.
    tiles = torch.cat([document_ids, document_ids[:, -1:].expand(B, pad)], 1).view(B, n, FLEX_BLOCK)
    lo, hi = tiles.amin(-1), tiles.amax(-1)
    blocks = torch.arange(n, device=document_ids.device)
    q_lo, q_hi, k_lo, k_hi = lo[:, :, None], hi[:, :, None], lo[:, None, :], hi[:, None, :]
    reachable = (blocks[None, :, None] >= blocks[None, None, :]) & (q_lo <= k_hi) & (k_lo <= q_hi)
    complete = blocks < T // FLEX_BLOCK  # the ragged last block always needs the mask
    one_doc = (lo == hi) & complete[None]
    full = ((blocks[:, None] > blocks[None, :]) & one_doc[:, :, None] & one_doc[:, None, :]
            & (q_lo == k_lo))

    def document_causal(b, h, q_idx, kv_idx):
        return (document_ids[b, q_idx] == document_ids[b, kv_idx]) & (q_idx >= kv_idx)

    return BlockMask.from_kv_blocks(*_ordered(reachable & ~full), *_ordered(full),
                                    BLOCK_SIZE=FLEX_BLOCK, mask_mod=document_causal,
                                    seq_lengths=(T, T))


def _ordered(block_table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n, n) bool block table -> BlockMask's (count, indices): per q block, how many kv blocks
    are marked and their indices first, ascending (a head axis of 1 is added)."""
    table = block_table[:, None].to(torch.int32)
    order = torch.argsort(table, dim=-1, descending=True, stable=True)
    return table.sum(-1).to(torch.int32), order.to(torch.int32)


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    # FlexAttention is only fast when compiled; uncompiled it materialises the full score matrix.
    return torch.compile(flex_attention, dynamic=False)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
    """Attention of q (B, Hq, T, D) over k, v (B, Hkv, S, D); Hq a multiple of Hkv (GQA)."""
    gqa = q.shape[1] != k.shape[1]
    if mask.backend == "causal":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if mask.backend == "full":
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    if mask.backend == "dense":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.dense, enable_gqa=gqa)
    if mask.backend == "flex":
        return _compiled_flex()(q, k, v, block_mask=mask.block_mask, enable_gqa=gqa)
    if mask.backend == "segments":
        return _segments(q, k, v, mask.segments, gqa)
    return _flash(q, k, v, mask)


def _segments(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segments: list[tuple[int, int, int, int]],
              gqa: bool) -> torch.Tensor:
    """Attention of each segment's queries over its own keys, one SDPA call each: a packed row costs
    the sum of the segments' squares, not the square of their sum (varlen attention, on any device)."""
    out = q.new_empty(q.shape)
    for qs, qn, ks, kn in segments:
        qq, kk, vv = q[:, :, qs:qs + qn], k[:, :, ks:ks + kn], v[:, :, ks:ks + kn]
        if qn == kn:
            out[:, :, qs:qs + qn] = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=gqa)
        else:  # queries are the last qn of kn keys: causal aligned to the end
            allowed = torch.ones(qn, kn, dtype=torch.bool, device=q.device).tril(kn - qn)
            out[:, :, qs:qs + qn] = F.scaled_dot_product_attention(qq, kk, vv, attn_mask=allowed, enable_gqa=gqa)
    return out


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
    """FlashAttention-2 varlen over the batch flattened to (B*T, heads, D): each document is one
    sequence of cu_seqlens; GQA is native (query head h reads kv head h // (Hq/Hkv))."""
    B, H, T, D = q.shape
    q, k, v = (t.transpose(1, 2).reshape(B * T, t.shape[1], D) for t in (q, k, v))
    cu, n = mask.cu_seqlens, mask.max_seqlen
    if varlen_kernel() == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        out = flash_attn_varlen_func(q, k, v, cu, cu, n, n, causal=True)
    else:
        from torch.nn.attention.varlen import varlen_attn

        out = varlen_attn(q, k, v, cu, cu, n, n, window_size=(-1, 0), enable_gqa=k.shape[1] != H)
    return out.view(B, T, H, D).transpose(1, 2)
