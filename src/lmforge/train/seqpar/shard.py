"""Rows in and out of the zigzag shards of a sequence-parallel group.

LoongTrain, arXiv 2406.18485, section 3 (docs/papers.md §5). The loader gives each data-parallel
rank whole rows; every rank of its sequence-parallel group (head x context) then keeps its
T / P tokens of them (`layout.token_indices`): `shard_batch` cuts a training batch, after the
targets were taken from the whole row (so a shard's last token still predicts the next token of
the row, held by another rank). `gather_rows` is the inverse for the few integers that attention
and RoPE need whole (document ids: a rank's positions and masks depend on the tokens before its
own), two small all-gathers instead of a change to every loss's batch. `pad_rows` lengthens rows
padded only to their micro-batch's longest (DPO's pairs) to a length that splits.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from lmforge.model.loss import IGNORE_INDEX
from lmforge.train.batch import Batch
from lmforge.train.seqpar.attention2d import SequenceParallelGroups
from lmforge.train.seqpar.layout import seq_len_multiple, shard_sequence, zigzag_indices

_PAD_VALUES = {"targets": IGNORE_INDEX, "loss_mask": False}  # every other per-token field: 0


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


def pad_rows(batch: Batch, head: int, context: int) -> Batch:
    """`batch` with every row lengthened to the next length that splits over head x context ranks
    (`layout.seq_len_multiple`). The new tokens end each row as a document of their own, with no
    targets and out of the loss mask, so the earlier tokens' attention and RoPE positions (they
    restart per document) are those of the shorter rows, and so is every loss; `seq_ends` are moved
    to the longer rows."""
    seq_len = batch.input_ids.shape[1]
    extra = -seq_len % seq_len_multiple(head, context)
    if not extra:
        return batch
    rows = batch.input_ids.shape[0]
    docs = batch.document_ids if batch.document_ids is not None else torch.zeros_like(batch.input_ids)
    fields = {"document_ids": torch.cat([docs, (docs.max(1, keepdim=True).values + 1).expand(rows, extra)], 1)}
    for f in dataclasses.fields(batch):
        t = getattr(batch, f.name)
        if f.name not in fields and t is not None and t.dim() >= 2 and t.shape[1] == seq_len:
            pad = t.new_full((rows, extra, *t.shape[2:]), _PAD_VALUES.get(f.name, 0))
            fields[f.name] = torch.cat([t, pad], 1)
    if batch.seq_ends is not None:
        fields["seq_ends"] = batch.seq_ends // seq_len * (seq_len + extra) + batch.seq_ends % seq_len
    return dataclasses.replace(batch, **fields)


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
