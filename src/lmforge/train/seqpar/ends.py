"""A reward model's read of its sequences' reward tokens when every row is sharded.

A reward model reads one hidden state per sequence, at flat positions of the whole rows
(`Batch.seq_ends`, row x T + column). Under 2D sequence parallelism (LoongTrain, arXiv
2406.18485; docs/papers.md §5) each rank holds T / P tokens of every row, so each reward token
lives on one rank only. `SequenceEnds` replaces the reward model's `read_seq_ends` (swapped in
from outside by `apply.apply_sequence_parallel`, as the attention cores are): every rank reads the
ends it holds, zeros for the others, and an all-reduce (sum) over the head group and the context
ring, with autograd, gives every rank all N hidden states, exactly (each end is added to zeros).
The model then applies its head to them, and every rank computes the same pair loss.

Gradients: every rank's loss is the global pair loss divided by P (the pairs are counted on every
rank of the group, so the divisor holds them P times). The all-reduce's backward is an all-reduce
(sum) of the incoming gradients: the P shares add up to the whole gradient of each end's hidden
state, which flows back on the rank that holds it; FSDP2's sum over all processes then gives the
gradient of one process. Only N x dim numbers travel, not the hidden states of the whole rows.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from lmforge.train.seqpar.attention2d import SequenceParallelGroups
from lmforge.train.seqpar.layout import token_indices


def shard_columns(seq_len: int, groups: SequenceParallelGroups, device: torch.device | str) -> torch.Tensor:
    """For every column of the whole rows (T,), its index in this rank's shard; -1 where another
    rank holds it."""
    h, c = groups.sizes
    mine = token_indices(seq_len, h, c, *groups.ranks, device=device)
    where = torch.full((seq_len,), -1, dtype=torch.long, device=device)
    where[mine] = torch.arange(mine.numel(), device=device)
    return where


class _SumOverGroup(torch.autograd.Function):
    """All-reduce (sum) whose backward is the all-reduce (sum) of the gradients: each rank's loss is
    a share of one global loss, so an input's gradient is the sum of every rank's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        x = x.contiguous().clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def sum_over_group(x: torch.Tensor, groups: SequenceParallelGroups) -> torch.Tensor:
    """The sum of `x` over every rank of the sequence-parallel group (head group, then context ring),
    with the backward above (also `rowsums.RowSums`'s)."""
    for group in (groups.head, groups.context):
        if group is not None and dist.get_world_size(group) > 1:
            x = _SumOverGroup.apply(x, group)
    return x


class SequenceEnds:
    """(hidden (B, T/P, D) of this rank's shard, ends (N,) flat positions in the whole rows (B, T))
    -> the hidden states at the ends (N, D), the same on every rank of the group."""

    def __init__(self, groups: SequenceParallelGroups):
        self.groups = groups

    def __call__(self, hidden: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        h, c = self.groups.sizes
        rows, local_len = hidden.shape[:2]
        seq_len = local_len * h * c
        if ends.numel() and (int(ends.min()) < 0 or int(ends.max()) >= rows * seq_len):
            raise ValueError(f"sequence ends must be flat positions in the whole rows ({rows} rows x {seq_len} tokens "
                             f"= {rows} x {local_len} per rank x {h * c} ranks); "
                             f"got {int(ends.min())}..{int(ends.max())}")
        ends = ends.to(hidden.device)
        cols = shard_columns(seq_len, self.groups, hidden.device)[ends % seq_len]
        held = (cols >= 0).unsqueeze(-1)
        mine = torch.where(held, hidden[ends // seq_len, cols.clamp(min=0)], 0).float()
        return sum_over_group(mine, self.groups).to(hidden.dtype)
