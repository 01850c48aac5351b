"""A preallocated key/value cache for batched generation, with one length per row.

Row b holds `lengths[b]` tokens in slots 0 .. lengths[b] - 1, and a token's slot is its position,
so rows of different lengths share one batch without padding in the cache: a prompt batch is
right-padded, each row's real tokens are written from its own length on, and the padding columns
land in slots past the row's length, where the row's next tokens overwrite them. Rows that finish
leave the batch (`keep_rows`), so later steps compute only the running ones.

The model reaches the cache through the protocol of `lmforge.model.cache`: `prepare` (positions,
mask and RoPE frequencies of the next tokens), `update` per layer, `advance`. `DecodeView` is the
same protocol for one fixed-shape decode step over all slots, which a compiled step can trace.

As in transformers and InternLM2's own code, keys are rotated once, when they enter the cache; with
dynamic NTK the base for new tokens is set by the longest row so far (one base per batch).
"""

from __future__ import annotations

import torch

from lmforge.model.attention import AttentionMask
from lmforge.model.cache import CacheStep
from lmforge.model.config import ModelConfig
from lmforge.model.rope import rope_inv_freq


class KVCache:
    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        # One tensor per layer (not slices of one): the compiled decode step writes each in place as
        # a graph input of its own, which a view would turn into a copy of the whole cache.
        shape = (batch_size, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.cfg, self.max_len = cfg, max_len
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)  # tokens held per row
        self.row_lengths = [0] * batch_size  # the same as Python ints: checks without a host sync
        self._start = 0  # the shared length of the pass being prepared, or -1 if rows differ
        self._added: list[int] = [0] * batch_size  # real tokens per row in the pass being prepared

    @property
    def batch_size(self) -> int:
        return len(self.row_lengths)

    @property
    def seq_len(self) -> int:
        """The longest row: the length that sets the dynamic-NTK base."""
        return max(self.row_lengths, default=0)

    def prepare(self, n_new: int, padding_mask: torch.Tensor | None = None) -> CacheStep:
        """Positions, mask and RoPE frequencies for `n_new` more tokens per row; padding_mask (B, n_new)
        marks each row's real tokens, which come first (right padding)."""
        B = self.batch_size
        if padding_mask is None:
            added = [n_new] * B
        else:
            added = padding_mask.sum(1).tolist()
            if not bool(padding_mask[:, :1].all()) or not torch.equal(
                    padding_mask, torch.arange(n_new, device=padding_mask.device)[None] < padding_mask.sum(1, True)):
                raise ValueError("padding_mask: each row's real tokens must come first (right padding), "
                                 "at least one per row")
        if max(self.row_lengths, default=0) + n_new > self.max_len:
            raise ValueError(f"KV cache full: {max(self.row_lengths)} + {n_new} tokens exceed its {self.max_len} slots")
        self._added = added
        self._start = self.row_lengths[0] if self.uniform and B else -1
        rope_len = max((r + a for r, a in zip(self.row_lengths, added)), default=1)
        inv_freq = rope_inv_freq(self.cfg, max(rope_len, 1), self.lengths.device)
        if self._start >= 0:
            L = self._start
            positions = torch.arange(L, L + n_new, device=self.lengths.device).expand(B, n_new)
            if n_new == 1:
                mask = AttentionMask("full")  # every slot so far is real: no mask at all
            elif L == 0:
                mask = AttentionMask("causal")
            else:
                mask = _dense(positions, L + n_new)
            return CacheStep(positions, mask, inv_freq=inv_freq)
        positions = self.lengths[:, None] + torch.arange(n_new, device=self.lengths.device)
        return CacheStep(positions, _dense(positions, max(self.row_lengths) + n_new), inv_freq=inv_freq)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (B, Hkv, n_new, D) after each row's tokens; return the
        slots the new tokens may attend to."""
        n_new = k.shape[2]
        kc, vc = self.k[layer], self.v[layer]
        if self._start >= 0:
            end = self._start + n_new
            kc[:, :, self._start:end] = k
            vc[:, :, self._start:end] = v
            return kc[:, :, :end], vc[:, :, :end]
        slots = self.lengths[:, None] + torch.arange(n_new, device=k.device)  # (B, n_new)
        index = slots[:, None, :, None].expand_as(k)
        kc.scatter_(2, index, k)
        vc.scatter_(2, index, v)
        end = max(self.row_lengths) + n_new
        return kc[:, :, :end], vc[:, :, :end]

    def advance(self, n_new: int) -> None:
        self.row_lengths = [r + a for r, a in zip(self.row_lengths, self._added)]
        self.lengths += torch.tensor(self._added, device=self.lengths.device)

    def decode_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For one decode step over all slots: the write slots = positions (B,), the valid slots
        (B, max_len) including the new one, and the RoPE frequencies. A few tensor ops and no host
        sync, since it runs once per generated token; `advance_one` follows the step."""
        if max(self.row_lengths, default=0) + 1 > self.max_len:
            raise ValueError(f"KV cache full: {max(self.row_lengths)} + 1 tokens exceed its {self.max_len} slots")
        valid = torch.arange(self.max_len, device=self.lengths.device)[None] <= self.lengths[:, None]
        # A copy: inside the window the frequencies come from a cache, made whenever it was first
        # asked (under inference mode or not), beyond it they are computed now; the compiled step
        # guards on that difference, so a generation that crosses the window recompiled (and, with
        # its guards skipped, gave up compiling).
        inv_freq = rope_inv_freq(self.cfg, self.seq_len + 1, self.lengths.device).clone()
        return self.lengths.clone(), valid, inv_freq

    @property
    def uniform(self) -> bool:
        """Whether every row holds the same number of tokens."""
        return len(set(self.row_lengths)) <= 1

    def advance_one(self) -> None:
        """Each row gained one token (after a step through `decode_inputs`)."""
        self.row_lengths = [r + 1 for r in self.row_lengths]
        self.lengths += 1

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only these rows, in this order (finished rows leave the batch)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.lengths.device)
        self.k = [t.index_select(0, index) for t in self.k]
        self.v = [t.index_select(0, index) for t in self.v]
        self.lengths = self.lengths.index_select(0, index)
        self.row_lengths = [self.row_lengths[i] for i in rows]


def _dense(positions: torch.Tensor, n_slots: int) -> AttentionMask:
    """Query at position p attends to slots 0 .. p (B, 1, n_new, n_slots)."""
    slots = torch.arange(n_slots, device=positions.device)
    return AttentionMask("dense", dense=(slots[None, None, :] <= positions[:, :, None])[:, None])


class DecodeView:
    """The cache protocol for one decode step over all `max_len` slots of a `KVCache`'s tensors:
    fixed shapes, the slot to write given as a tensor, so one compiled graph serves every step."""

    def __init__(self, k: list[torch.Tensor], v: list[torch.Tensor], slots: torch.Tensor, valid: torch.Tensor,
                 inv_freq: torch.Tensor, uniform: bool = False):
        """uniform: every row has the same length, so the new keys go to one slot for all rows."""
        self.k, self.v, self.slots, self.valid, self.inv_freq = k, v, slots, valid, inv_freq
        self.uniform = uniform
        self.slot = slots[:1]  # the one slot of uniform rows
        self.rows = None if uniform else torch.arange(slots.shape[0], device=slots.device)

    def prepare(self, n_new: int, padding_mask: torch.Tensor | None = None) -> CacheStep:
        return CacheStep(self.slots[:, None], AttentionMask("dense", dense=self.valid[:, None, None, :]),
                         inv_freq=self.inv_freq)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.uniform:  # one slot: the cheapest write, eagerly (2 us against 7-11)
            self.k[layer].index_copy_(2, self.slot, k)
            self.v[layer].index_copy_(2, self.slot, v)
        else:  # an indexed store per row, which inductor does in place (a scatter_ would copy the cache)
            self.k[layer][self.rows, :, self.slots] = k[:, :, 0]
            self.v[layer][self.rows, :, self.slots] = v[:, :, 0]
        return self.k[layer], self.v[layer]

    def advance(self, n_new: int) -> None:
        pass
