"""The context ring's topology and its asynchronous point-to-point exchanges (Double-Ring).

LoongTrain's Double-Ring-Attention (arXiv 2406.18485, section 3.3; docs/papers.md §5) splits the
ring of context_size ranks into windows of `window` consecutive ranks. Key/value blocks go round
an inner ring inside each window; meanwhile each rank sends the block it began the window pass
with to the rank at its place in the next window (the outer ring), so after context_size / window
passes every rank has seen every block. Inner and outer rings use different links (inside a
node, across nodes) at the same time. window == context_size is the plain ring; window == 1 uses
the outer ring alone.

Every exchange is posted with `batch_isend_irecv` before the block it overlaps is computed and
waited for after it, so communication runs under computation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lmforge.train.seqpar.layout import check_window

# One tag per stream, so that gloo never matches a key/value block with a gradient buffer.
TAG_INNER_KV, TAG_INNER_GRAD, TAG_OUTER_KV, TAG_OUTER_GRAD = 11, 12, 13, 14


@dataclass(frozen=True)
class Ring:
    """A rank's place in the context ring: the global ranks in ring order and its own index."""

    ranks: tuple[int, ...]
    index: int
    window: int

    def __post_init__(self) -> None:
        check_window(len(self.ranks), self.window)

    @classmethod
    def of(cls, group, window: int | None = None) -> Ring:
        """The ring over a process group (None: this process alone), in the group's rank order."""
        if group is None or dist.get_world_size(group) == 1:
            return cls((dist.get_rank() if dist.is_initialized() else 0,), 0, 1)
        ranks = tuple(dist.get_process_group_ranks(group))
        return cls(ranks, dist.get_rank(group), window or len(ranks))

    @property
    def size(self) -> int:
        return len(self.ranks)

    @property
    def n_windows(self) -> int:
        return self.size // self.window

    def _peers(self, step: int, span: int, base: int) -> tuple[int, int]:
        """Global (next, previous) ranks `step` places along a ring of `span` places from `base`."""
        i = self.index - base
        return self.ranks[base + (i + step) % span], self.ranks[base + (i - step) % span]

    def inner_peers(self) -> tuple[int, int]:
        base = self.index // self.window * self.window
        return self._peers(1, self.window, base)

    def outer_peers(self) -> tuple[int, int]:
        return self._peers(self.window, self.size, 0)

    def source(self, outer_step: int, inner_step: int) -> int:
        """Ring index of the rank whose key/value block this rank holds at (outer, inner) step."""
        w = self.window
        win = (self.index // w - outer_step) % self.n_windows
        return win * w + (self.index % w - inner_step) % w


class Exchange:
    """One send of `tensor` to `peers[0]` and receive of a like tensor from `peers[1]`, in flight."""

    def __init__(self, tensor: torch.Tensor, peers: tuple[int, int], tag: int):
        self.received = torch.empty_like(tensor)
        self.works = dist.batch_isend_irecv([dist.P2POp(dist.isend, tensor.contiguous(), peers[0], tag=tag),
                                             dist.P2POp(dist.irecv, self.received, peers[1], tag=tag)])

    def wait(self) -> torch.Tensor:
        for work in self.works:
            work.wait()
        return self.received


def kv_blocks(kv: torch.Tensor, ring: Ring) -> Iterator[tuple[int, int, int, torch.Tensor]]:
    """Every key/value block of the ring in double-ring order: yields (outer step, inner step,
    source ring index, block), with the next inner and outer blocks already in flight."""
    outer = kv
    for o in range(ring.n_windows):
        outer_x = Exchange(outer, ring.outer_peers(), TAG_OUTER_KV) if o < ring.n_windows - 1 else None
        block = outer
        for j in range(ring.window):
            inner_x = Exchange(block, ring.inner_peers(), TAG_INNER_KV) if j < ring.window - 1 else None
            yield o, j, ring.source(o, j), block
            if inner_x is not None:
                block = inner_x.wait()
        if outer_x is not None:
            outer = outer_x.wait()


class GradientReturn:
    """Carries the dk/dv of each key/value block back to its owner along the path the block took.

    The buffer of a block trails the block by one step round the inner ring and comes back to the
    rank that started the window pass with it (window sends); that rank adds what earlier windows
    sent for the block and passes the sum on along the outer ring; after the last window pass this
    send reaches the block's owner."""

    def __init__(self, ring: Ring):
        self.ring = ring
        self.inner: Exchange | None = None
        self.outer: Exchange | None = None
        self.buffer: torch.Tensor | None = None

    def add(self, outer_step: int, inner_step: int, grad: torch.Tensor) -> None:
        """Add this rank's gradient for the block it holds at (outer_step, inner_step)."""
        ring = self.ring
        buffer = grad if inner_step == 0 else self.inner.wait() + grad
        if ring.window > 1:
            self.inner = Exchange(buffer, ring.inner_peers(), TAG_INNER_GRAD)
        if inner_step < ring.window - 1:
            return
        if ring.window > 1:
            buffer = self.inner.wait()
        if outer_step > 0:
            buffer = buffer + self.outer.wait()
        if ring.n_windows > 1:
            self.outer = Exchange(buffer, ring.outer_peers(), TAG_OUTER_GRAD)
        self.buffer = buffer

    def result(self) -> torch.Tensor:
        """The summed gradient of this rank's own block, from every rank of the ring."""
        return self.outer.wait() if self.ring.n_windows > 1 else self.buffer
