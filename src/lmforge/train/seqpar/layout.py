"""Which tokens each rank of a 2D sequence-parallel group holds, and the size checks.

LoongTrain (arXiv 2406.18485, section 3; docs/papers.md §5) splits a sequence of T tokens over
head_size x context_size ranks. Causal attention makes late tokens cost more than early ones, so
the context ring is balanced by zigzag chunking: the sequence is cut into 2 x context_size equal
chunks and context rank c holds chunks c and 2C-1-c (one cheap, one expensive). The head group of
that context rank then splits those T/C tokens into head_size contiguous pieces: after the head
all-to-all each rank of the head group holds all T/C tokens again, in zigzag order.

The checks raise ValueError naming the numbers and a value that would work.
"""

from __future__ import annotations

import math

import torch


def zigzag_indices(seq_len: int, context_size: int, context_rank: int,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Global token positions of context rank `context_rank`: chunks r and 2C-1-r of 2C."""
    chunk = seq_len // (2 * context_size)
    first = torch.arange(context_rank * chunk, (context_rank + 1) * chunk, device=device)
    second = torch.arange((2 * context_size - 1 - context_rank) * chunk,
                          (2 * context_size - context_rank) * chunk, device=device)
    return torch.cat([first, second])


def token_indices(seq_len: int, head_size: int, context_size: int, head_rank: int, context_rank: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Global positions of the T / (head_size x context_size) tokens that rank (head, context)
    holds outside attention (and so the positions RoPE must use for them)."""
    check_seq_len(seq_len, head_size, context_size)
    piece = seq_len // (context_size * head_size)
    return zigzag_indices(seq_len, context_size, context_rank, device)[head_rank * piece:(head_rank + 1) * piece]


def shard_sequence(x: torch.Tensor, head_size: int, context_size: int, head_rank: int, context_rank: int,
                   dim: int = 1) -> torch.Tensor:
    """This rank's shard of a full-sequence tensor (tokens along `dim`)."""
    idx = token_indices(x.shape[dim], head_size, context_size, head_rank, context_rank, x.device)
    return x.index_select(dim, idx)


def seq_len_multiple(head_size: int, context_size: int) -> int:
    """The sequence length must be a multiple of this: 2C zigzag chunks, and T/C tokens that split
    into head_size equal pieces."""
    return context_size * math.lcm(2, head_size)


def check_seq_len(seq_len: int, head_size: int, context_size: int) -> None:
    m = seq_len_multiple(head_size, context_size)
    if seq_len <= 0 or seq_len % m:
        lower, upper = seq_len // m * m, max(seq_len // m + 1, 1) * m
        near = f"{lower} or {upper}" if lower > 0 else str(upper)
        raise ValueError(
            f"sequence length {seq_len} does not split over head_size={head_size} x context_size={context_size}: "
            f"it must be a multiple of {m} (2 x context_size = {2 * context_size} zigzag chunks, each rank of "
            f"the head group an equal piece); use seq_len={near}")


def check_heads(n_heads: int, n_kv_heads: int, head_size: int) -> None:
    """Query heads must split evenly over the head group; kv heads are replicated when they don't."""
    if n_heads % head_size:
        valid = [d for d in range(1, n_heads + 1) if n_heads % d == 0]
        raise ValueError(f"n_heads={n_heads} is not divisible by head_size={head_size}: "
                         f"use head_size in {valid}")
    if n_heads % n_kv_heads:
        raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads} (GQA)")


def check_window(context_size: int, window: int) -> None:
    """The double ring's inner rings hold `window` consecutive ranks of the context ring."""
    if window < 1 or context_size % window:
        valid = [d for d in range(1, context_size + 1) if context_size % d == 0]
        raise ValueError(f"double_ring_window={window} does not divide context_size={context_size}: "
                         f"use one of {valid} ({context_size} = one plain ring)")


def factor_world(world_size: int, head_size: int, context_size: int) -> int:
    """The data-parallel size dp with dp x head x context = world_size, or an error naming sizes
    that would factor."""
    p = head_size * context_size
    if head_size < 1 or context_size < 1 or world_size % p:
        divisors = [d for d in range(1, world_size + 1) if world_size % d == 0]
        raise ValueError(
            f"world size {world_size} does not factor into dp x head x context with head={head_size}, "
            f"context={context_size} (head x context = {p}): choose head x context among {divisors}, "
            f"or start a multiple of {max(p, 1)} processes (e.g. {max(p, 1) * max(1, -(-world_size // max(p, 1)))})")
    return world_size // p
