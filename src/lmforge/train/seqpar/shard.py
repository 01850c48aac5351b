"""Rows in and out of the zigzag shards of a sequence-parallel group.

LoongTrain, arXiv 2406.18485, section 3 (docs/papers.md §5). The loader gives each data-parallel
rank whole rows; every rank of its sequence-parallel group (head x context) then keeps its
T / P tokens of them (`layout.token_indices`): `shard_batch` cuts a training batch, after the
targets were taken from the whole row (so a shard's last token still predicts the next token of
the row, held by another rank). `gather_rows` is the inverse for the few integers that attention
and RoPE need whole (document ids: a rank's positions and masks depend on the tokens before its
own), two small all-gathers instead of a change to every loss's batch.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from lmforge.train.batch import Batch
from lmforge.train.seqpar.attention2d import SequenceParallelGroups
from lmforge.train.seqpar.layout import shard_sequence, zigzag_indices


def shard_batch(batch: Batch, groups: SequenceParallelGroups) -> Batch:
    """This rank's tokens of every per-token field (B, L) of `batch`; per-row fields unchanged.
    `seq_ends` (flat positions in the whole rows) stays global: a reward model under sequence
    parallelism reads them over the group (`ends.SequenceEnds`)."""
    seq_len = batch.input_ids.shape[1]

    def mine(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or t.dim() < 2 or t.shape[1] != seq_len:
            return t
        return shard_sequence(t, *groups.sizes, *groups.ranks, dim=1)

    return Batch(**{f.name: mine(getattr(batch, f.name)) for f in dataclasses.fields(batch)})


def _all_gather(x: torch.Tensor, group) -> list[torch.Tensor]:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return parts


def gather_rows(local: torch.Tensor, groups: SequenceParallelGroups) -> torch.Tensor:
    """The whole rows (B, T) of a tensor sharded by `shard_batch` (B, T/P), in token order."""
    h, c = groups.sizes
    if h > 1:  # the head group's pieces, in head-rank order, make the context rank's zigzag tokens
        local = torch.cat(_all_gather(local, groups.head), dim=1)
    if c == 1:
        return local
    seq_len = local.shape[1] * c
    rows = local.new_empty(local.shape[0], seq_len)
    for rank, part in enumerate(_all_gather(local, groups.context)):
        rows[:, zigzag_indices(seq_len, c, rank, local.device)] = part
    return rows
