"""Head parallelism (DeepSpeed-Ulysses): an all-to-all trades a sequence shard for a head shard.

LoongTrain, arXiv 2406.18485, sections 2.2 and 3.1 (docs/papers.md §5). Before attention each
rank of a head group of size h holds T' tokens of all H heads; one all-to-all gives it h x T'
tokens (all of its context rank's tokens) of H/h heads, and the reverse all-to-all after attention
brings the output back to the sequence shard. q, k and v travel in one all-to-all. When the head
group is larger than the number of kv heads (GQA), kv heads are replicated until they split
evenly: each rank then receives exactly the kv heads its query heads read.

The all-to-all is an autograd.Function whose backward is the reverse all-to-all.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


def all_to_all(x: torch.Tensor, group, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    """Split `x` into group-size parts along `scatter_dim`, send part i to rank i, and concatenate
    the parts received along `gather_dim` in rank order."""
    n = dist.get_world_size(group)
    send = torch.stack(x.chunk(n, dim=scatter_dim)).contiguous()
    received = torch.empty_like(send)
    dist.all_to_all_single(received, send, group=group)
    return torch.cat(received.unbind(0), dim=gather_dim)


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, scatter_dim: int, gather_dim: int):
        ctx.group, ctx.dims = group, (scatter_dim, gather_dim)
        return all_to_all(x, group, scatter_dim, gather_dim)

    @staticmethod
    def backward(ctx, grad):
        scatter_dim, gather_dim = ctx.dims
        return all_to_all(grad, ctx.group, gather_dim, scatter_dim), None, None, None


def sequence_to_heads(x: torch.Tensor, group) -> torch.Tensor:
    """(B, H, T', D) sequence shard -> (B, H/h, h*T', D) head shard (h = the group's size)."""
    return _AllToAll.apply(x, group, 1, 2)


def heads_to_sequence(x: torch.Tensor, group) -> torch.Tensor:
    """(B, H/h, h*T', D) head shard -> (B, H, T', D) sequence shard: the inverse of sequence_to_heads."""
    return _AllToAll.apply(x, group, 2, 1)


def replicate_kv_heads(x: torch.Tensor, head_size: int) -> torch.Tensor:
    """(B, Hkv, T, D) -> (B, lcm(Hkv, h), T, D): each kv head repeated in place, so that the kv
    heads split evenly over h ranks and query head i still reads (a copy of) its own kv head."""
    n_kv = x.shape[1]
    repeat = math.lcm(n_kv, head_size) // n_kv
    return x.repeat_interleave(repeat, dim=1) if repeat > 1 else x


def scatter_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (B, H, T', D), k, v (B, Hkv, T', D) sequence shards -> head shards of h*T' tokens, in one
    all-to-all: rank i receives query heads [i*H/h, (i+1)*H/h) and the kv heads they read."""
    h = dist.get_world_size(group)
    k, v = replicate_kv_heads(k, h), replicate_kv_heads(v, h)
    B, _, T, D = q.shape
    parts = [t.reshape(B, h, t.shape[1] // h, T, D) for t in (q, k, v)]
    packed = sequence_to_heads(torch.cat(parts, dim=2).flatten(1, 2), group)
    return packed.split([q.shape[1] // h, k.shape[1] // h, v.shape[1] // h], dim=1)
