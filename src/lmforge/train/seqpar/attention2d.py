"""2D-Attention: head all-to-all inside the head group, then ring attention over the context group.

LoongTrain, arXiv 2406.18485, section 3 (docs/papers.md §5). Outside attention every rank of a
sequence-parallel group holds T/P tokens (`layout.token_indices`: zigzag chunks of its context
rank, split over its head group). `sequence_parallel_attention` takes that shard's q, k, v, runs
the head all-to-all (`ulysses`), the context ring (`ring`), and the reverse all-to-all, and returns
the attention output of the same shard. With head_size = P it is pure Ulysses, with
context_size = P pure ring attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from lmforge.train.seqpar.layout import check_heads, check_seq_len
from lmforge.train.seqpar.ring import KeptAttention, ring_attention
from lmforge.train.seqpar.ringcomm import Ring
from lmforge.train.seqpar.ulysses import heads_to_sequence, scatter_heads


def _size(group) -> int:
    return 1 if group is None else dist.get_world_size(group)


def _rank(group) -> int:
    return 0 if group is None else dist.get_rank(group)


@dataclass(frozen=True)
class SequenceParallelGroups:
    """The process groups of this rank: its head group (all-to-all) and context group (ring);
    None is a group of one. `double_ring_window` ranks per inner ring (None: one plain ring)."""

    head: object | None = None
    context: object | None = None
    double_ring_window: int | None = None

    @classmethod
    def from_mesh(cls, mesh, double_ring_window: int | None = None) -> SequenceParallelGroups:
        """From a DeviceMesh with dims named "head" and "context" (`mesh.sequence_parallel_mesh`)."""
        return cls(mesh["head"].get_group(), mesh["context"].get_group(), double_ring_window)

    @property
    def sizes(self) -> tuple[int, int]:
        """(head_size, context_size)."""
        return _size(self.head), _size(self.context)

    @property
    def ranks(self) -> tuple[int, int]:
        """This process's (head rank, context rank): its coordinates in the 2D group."""
        return _rank(self.head), _rank(self.context)

    def ring(self) -> Ring:
        return Ring.of(self.context, self.double_ring_window)


def sequence_parallel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                document_ids: torch.Tensor | None, groups: SequenceParallelGroups,
                                scale: float | None = None, kept: KeptAttention | None = None) -> torch.Tensor:
    """Causal attention of this rank's token shard over the whole sequence.

    q (B, H, T/P, D), k and v (B, Hkv, T/P, D): the tokens `token_indices` gives this rank, with
    RoPE applied at those global positions. `document_ids` (B, T): the whole rows' document ids
    (packed rows; None for one document per row). Returns (B, H, T/P, D) for the same tokens.
    `kept` (Selective Checkpoint++): the ring's output and lse from the first forward, reused by
    a checkpoint's recompute (`ring.KeptAttention`); the head all-to-alls do run again."""
    h, c = groups.sizes
    check_heads(q.shape[1], k.shape[1], h)
    check_seq_len(q.shape[2] * h * c, h, c)
    if document_ids is not None and document_ids.shape[1] != q.shape[2] * h * c:
        raise ValueError(f"document_ids hold {document_ids.shape[1]} tokens per row, but the sequence has "
                         f"{q.shape[2]} tokens per rank x {h * c} ranks = {q.shape[2] * h * c}: pass the whole "
                         "rows' ids, not this rank's shard")
    if h > 1:
        q, k, v = scatter_heads(q, k, v, groups.head)
    out = ring_attention(q, k, v, document_ids, groups.ring(), scale, kept)
    return heads_to_sequence(out, groups.head) if h > 1 else out
