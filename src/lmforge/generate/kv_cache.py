"""A preallocated key/value cache for batched, left-padded generation.

The model asks the cache for the positions and the attention mask of the tokens it is about to
process (`prepare`), hands each layer's new keys and values to it (`update`), and moves it forward
when the pass is done (`advance`). Rows of a batch may hold prompts of different lengths, padded
on the left: padding slots are never attended to, and positions count only real tokens, so a
padded row computes exactly what it would alone.

As in transformers and InternLM2's own code, keys are rotated once, when they enter the cache; with
dynamic NTK the base used for a new token depends on the length reached so far.
"""

from __future__ import annotations

import torch

from lmforge.model.attention import AttentionMask
from lmforge.model.config import ModelConfig


class KVCache:
    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        # One tensor per layer (not slices of one): the compiled decode step writes each in place as
        # a graph input of its own, which a view would turn into a copy of the whole cache.
        shape = (batch_size, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.max_len = max_len
        self.length = 0
        self.has_padding = False
        self.seq_len = 0  # max(position) + 1 over the batch, as an int (sets the dynamic-NTK base)

    def prepare(self, n_new: int, padding_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, AttentionMask]:
        """Positions (B, n_new) and the attention mask for the next `n_new` tokens of every row."""
        B, L = self.valid.shape[0], self.length
        if n_new == 1 and padding_mask is None:
            return self._prepare_one()  # checks the room itself
        self._check_room(n_new)
        new = (torch.ones(B, n_new, dtype=torch.bool, device=self.valid.device) if padding_mask is None
               else padding_mask.to(self.valid.device, torch.bool))
        self.valid[:, L:L + n_new] = new
        self.has_padding |= not bool(new.all())
        positions = (self.next_pos[:, None] + new.long().cumsum(1) - 1).clamp(min=0)
        self.next_pos += new.sum(1)
        self.seq_len = max(int(self.next_pos.max()), 1)
        S = L + n_new
        slots = torch.arange(S, device=self.valid.device)
        query_slots = slots[L:, None]
        allowed = (slots[None] <= query_slots)[None] & self.valid[:, None, :S]
        # A padding query may see nothing else; letting it see itself avoids a NaN softmax row.
        allowed |= (slots[None] == query_slots)[None]
        return positions, AttentionMask("dense", dense=allowed[:, None])

    def _check_room(self, n_new: int) -> None:
        if self.length + n_new > self.max_len:
            raise ValueError(f"KV cache full: {self.length} + {n_new} tokens exceed its {self.max_len} slots")

    def step_positions(self) -> torch.Tensor:
        """The decoding step's bookkeeping: one real token per row at the next slot, marked valid;
        its positions (B, 1). A few tensor ops and no host sync, since it runs once per generated
        token (also by lmforge.generate.decode, which masks the slots itself)."""
        self._check_room(1)
        self.valid[:, self.length] = True
        positions = self.next_pos[:, None].clone()
        self.next_pos += 1
        self.seq_len += 1
        return positions

    def _prepare_one(self) -> tuple[torch.Tensor, AttentionMask]:
        """The decoding step through the model's forward: the new token may see every real slot so far."""
        positions = self.step_positions()
        if not self.has_padding:
            return positions, AttentionMask("full")  # every cached slot is real: no mask at all
        return positions, AttentionMask("dense", dense=self.valid[:, None, None, :self.length + 1])

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (B, Hkv, n_new, D); return all keys/values so far."""
        end = self.length + k.shape[2]
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, n_new: int) -> None:
        self.length += n_new
