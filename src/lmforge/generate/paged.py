"""A paged KV cache: the key/value tensors of a block pool, and one forward pass's view of it.

`KVPool` holds, per layer, keys and values for `n_blocks * block_size` token slots, laid out
(kv head, slot, head dim): a sequence's tokens are rows of each head, gathered with one
`index_select` and written with one `index_copy_`; `BlockManager` (lmforge.generate.blocks) decides
which blocks a sequence holds. Block 0 is scratch, never handed out.

The engine's forward passes reach the pool through two implementations of the KV-cache protocol
of lmforge.model.cache:

- `PackedPrefill`: the new prompts of a step, packed into one row without padding, each attending
  to its own cached and new tokens only;
- `DecodeBatch`: one token for each running sequence, step after step, over a contiguous working
  copy of their keys and values that lasts while the set of sequences does.

A sequence's new tokens take positions len, len + 1, ... and see every earlier token of their own
sequence and nothing else. Each sequence gets the dynamic-NTK base of its own length (InternLM2's
rule, docs/papers.md §1), so a request computes what it would alone, whoever shares the batch.
A sequence may instead bring float RoPE positions (V2PE: image tokens advance by less than 1): the
prefill takes them per token, decoding continues at index + a per-sequence shift, and the length
that sets the dynamic-NTK base is then its last position + 1 (as a cacheless forward computes it).
Where no sequence brings any, the integer path is unchanged.
"""

from __future__ import annotations

import math

import torch

from lmforge.generate.blocks import BlockManager
from lmforge.model.attention import AttentionMask
from lmforge.model.cache import CacheStep
from lmforge.model.config import ModelConfig
from lmforge.model.rope import rope_inv_freq

SCRATCH_BLOCKS = 1


class KVPool:
    def __init__(self, cfg: ModelConfig, n_blocks: int, block_size: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        """n_blocks: the memory budget in blocks of `block_size` tokens (plus the scratch block)."""
        n_slots = (n_blocks + SCRATCH_BLOCKS) * block_size
        shape = (cfg.n_kv_heads, n_slots, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.cfg, self.block_size, self.device = cfg, block_size, torch.device(device)
        self.blocks = BlockManager(n_blocks + SCRATCH_BLOCKS, block_size, reserved=SCRATCH_BLOCKS)

    @property
    def bytes_per_block(self) -> int:
        t = self.k[0]
        return 2 * len(self.k) * self.block_size * t.shape[0] * t.shape[2] * t.element_size()

    @staticmethod
    def blocks_for_bytes(cfg: ModelConfig, block_size: int, budget_bytes: int, dtype: torch.dtype) -> int:
        """How many blocks a memory budget holds."""
        per_block = 2 * cfg.n_layers * block_size * cfg.n_kv_heads * cfg.head_dim * dtype.itemsize
        return max(1, budget_bytes // per_block)


def row_inv_freq(cfg: ModelConfig, ends: list[int | float], device: torch.device) -> torch.Tensor:
    """RoPE frequencies for rows whose passes end at these lengths: one set for all while every row
    is inside the trained window, else one per row, at the dynamic-NTK base of its own length (a
    float length, max position + 1 of a row with float positions, in float32 tensor maths as a
    cacheless forward computes it)."""
    if cfg.rope_scaling != "dynamic" or max(ends) <= cfg.max_seq_len:  # the base unchanged: any length will do
        return rope_inv_freq(cfg, max(math.ceil(max(ends)), 1), device)

    def length(e):
        return max(e, 1) if isinstance(e, int) else torch.tensor(e, dtype=torch.float32, device=device)

    return torch.stack([rope_inv_freq(cfg, length(e), device) for e in ends])


def _slots(table: list[int], start: int, stop: int, block_size: int) -> list[int]:
    """The pool slots of positions start .. stop - 1 of a sequence with this block table."""
    return [table[p // block_size] * block_size + p % block_size for p in range(start, stop)]


def _read_slots(tables: list[list[int]], ends: list[int], n_slots: int, block_size: int,
                device: torch.device) -> torch.Tensor:
    """(B * n_slots,) pool slots of positions 0 .. n_slots - 1 of each row; past a row's end, the
    scratch slot 0 (masked out)."""
    width = -(-n_slots // block_size)
    tab = torch.tensor([t[:width] + [0] * (width - len(t[:width])) for t in tables], device=device)
    slots = (tab[:, :, None] * block_size + torch.arange(block_size, device=device)).flatten(1)[:, :n_slots]
    inside = torch.arange(n_slots, device=device)[None] < torch.tensor(ends, device=device)[:, None]
    return torch.where(inside, slots, 0).flatten()


class PackedPrefill:
    """The cache protocol for prefilling several sequences at once, their new tokens packed into one
    row without padding (`counts[r]` tokens for sequence r, after its `lengths[r]` cached ones).

    Each sequence's queries attend to its own keys only (the "segments" attention: one call per
    sequence, so the row costs the sum of its sequences' squares), so a batch of prompts of mixed
    lengths costs the tokens it has, not the longest prompt times the batch.
    """

    def __init__(self, pool: KVPool, tables: list[list[int]], lengths: list[int], counts: list[int],
                 positions: list[torch.Tensor | None] | None = None):
        """positions: per sequence, None or the float RoPE positions (counts[r],) of its new tokens."""
        self.pool, self.tables, self.lengths, self.counts = pool, tables, lengths, counts
        self.positions = positions

    def prepare(self, n_new: int, padding_mask: torch.Tensor | None = None) -> CacheStep:
        if n_new != sum(self.counts) or padding_mask is not None:
            raise ValueError(f"a packed prefill of {sum(self.counts)} tokens got {n_new}, or padding")
        bs, dev, cfg = self.pool.block_size, self.pool.device, self.pool.cfg
        write, read, segments, positions, ends = [], [], [], [], []
        q, k = 0, 0
        for table, n, c in zip(self.tables, self.lengths, self.counts):
            if (n + c + bs - 1) // bs > len(table):
                raise ValueError(f"a sequence of {n} + {c} tokens needs more than its {len(table)} KV blocks")
            write += _slots(table, n, n + c, bs)
            read += _slots(table, 0, n + c, bs)
            segments.append((q, c, k, n + c))
            positions += range(n, n + c)
            ends.append(n + c)
            q, k = q + c, k + n + c
        self._write = torch.tensor(write, dtype=torch.long, device=dev)
        self._read = None if max(self.lengths) == 0 else torch.tensor(read, dtype=torch.long, device=dev)
        rope_positions = torch.tensor([positions], device=dev)
        if self.positions is not None:
            rope_positions = torch.cat([given.to(dev) if given is not None else
                                        torch.arange(n, n + c, dtype=torch.float32, device=dev)
                                        for given, n, c in zip(self.positions, self.lengths, self.counts)])[None]
            ends = [float(given[-1]) + 1 if given is not None else e for given, e in zip(self.positions, ends)]
        inv_freq = row_inv_freq(cfg, ends, dev)
        if inv_freq.dim() == 2:  # per sequence -> per token of the packed row
            inv_freq = inv_freq.repeat_interleave(torch.tensor(self.counts, device=dev), dim=0)[None]
        after = torch.ones(1, k, dtype=torch.bool, device=dev)  # smeared keys: no key before a sequence's first
        after[0, [ks for _, _, ks, _ in segments]] = False
        return CacheStep(rope_positions, AttentionMask("segments", segments=segments, key_prev=after),
                         inv_freq=inv_freq)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kp, vp = self.pool.k[layer], self.pool.v[layer]
        kp.index_copy_(1, self._write, k[0])
        vp.index_copy_(1, self._write, v[0])
        if self._read is None:  # no cached prefix anywhere: the keys are the new ones, in order
            return k, v
        return kp.index_select(1, self._read)[None], vp.index_select(1, self._read)[None]

    def advance(self, n_new: int) -> None:
        self.lengths = [n + c for n, c in zip(self.lengths, self.counts)]


class DecodeBatch:
    """The cache protocol for decoding a set of running sequences one token at a time, step after
    step, without gathering their blocks at every step.

    Attention reads a contiguous working copy of the sequences' keys and values, (B, kv heads,
    capacity, head dim) per layer, built from the pool once (`__init__`, one gather) and kept while
    the set of sequences is the same; each step writes its new key and value into the copy only,
    and `flush` writes the new tokens back into the pool, where the prefix cache and a later batch
    read them. The engine flushes before anything reads the pool (admitting, finishing, preempting,
    building the next batch) and builds a new batch whenever a sequence joins or leaves; `capacity`
    bounds the sequences' lengths (prompt plus the tokens they may still generate), so the copy
    never grows.
    """

    def __init__(self, pool: KVPool, tables: list[list[int]], lengths: list[int], capacity: int,
                 shifts: list[float] | None = None):
        """shifts: per sequence, RoPE position minus index of its new tokens (float positions,
        V2PE); None: positions are the indices."""
        self.pool, self.tables, self.lengths = pool, tables, list(lengths)
        self.shifts = shifts
        self.flushed = list(lengths)  # per sequence: the tokens the pool holds
        bs, dev, B = pool.block_size, pool.device, len(tables)
        S = max(lengths)
        read = _read_slots(tables, lengths, S, bs, dev)
        self.k, self.v = [], []
        for kp, vp in zip(pool.k, pool.v):
            H, _, D = kp.shape
            kw = kp.new_zeros(B, H, capacity, D)
            vw = vp.new_zeros(B, H, capacity, D)
            kw[:, :, :S] = kp.index_select(1, read).view(H, B, S, D).transpose(0, 1)
            vw[:, :, :S] = vp.index_select(1, read).view(H, B, S, D).transpose(0, 1)
            self.k.append(kw)
            self.v.append(vw)
        self.rows = torch.arange(B, device=dev)

    def prepare(self, n_new: int, padding_mask: torch.Tensor | None = None) -> CacheStep:
        if n_new != 1 or padding_mask is not None:
            raise ValueError("a DecodeBatch takes one new token per sequence")
        dev = self.pool.device
        self._pos = torch.tensor(self.lengths, device=dev)
        self._uniform = len(set(self.lengths)) == 1
        self._S = max(self.lengths) + 1
        ends = [n + 1 for n in self.lengths]
        rope_positions = self._pos[:, None]
        if self.shifts is not None:
            shifted = [n + s for n, s in zip(self.lengths, self.shifts)]  # float64 maths, one rounding to float32
            rope_positions = torch.tensor(shifted, dtype=torch.float32, device=dev)[:, None]
            ends = [p + 1 if s else e for p, s, e in zip(shifted, self.shifts, ends)]
        if self._uniform:
            mask = AttentionMask("full")
        else:
            key_pos = torch.arange(self._S, device=dev)
            mask = AttentionMask("dense", dense=(key_pos[None, :] <= self._pos[:, None])[:, None, None, :])
        return CacheStep(rope_positions, mask, inv_freq=row_inv_freq(self.pool.cfg, ends, dev))

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, H, _, D = k.shape
        kw, vw = self.k[layer], self.v[layer]
        if self._uniform:
            n = self.lengths[0]
            kw[:, :, n:n + 1] = k
            vw[:, :, n:n + 1] = v
        else:
            kw[self.rows, :, self._pos] = k[:, :, 0]
            vw[self.rows, :, self._pos] = v[:, :, 0]
        return kw[:, :, :self._S], vw[:, :, :self._S]

    def advance(self, n_new: int) -> None:
        self.lengths = [n + 1 for n in self.lengths]

    def flush(self) -> None:
        """Write the tokens decoded since the last flush into the pool."""
        bs, dev = self.pool.block_size, self.pool.device
        rows, positions, slots = [], [], []
        for r, (table, start, end) in enumerate(zip(self.tables, self.flushed, self.lengths)):
            rows += [r] * (end - start)
            positions += range(start, end)
            slots += _slots(table, start, end, bs)
        if not slots:
            return
        rows_t, pos_t = torch.tensor(rows, device=dev), torch.tensor(positions, device=dev)
        slots_t = torch.tensor(slots, device=dev)
        for kp, vp, kw, vw in zip(self.pool.k, self.pool.v, self.k, self.v):
            kp.index_copy_(1, slots_t, kw[rows_t, :, pos_t].transpose(0, 1))
            vp.index_copy_(1, slots_t, vw[rows_t, :, pos_t].transpose(0, 1))
        self.flushed = list(self.lengths)
