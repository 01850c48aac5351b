"""The key/value-cache protocol: how the model's one forward serves prefill, decoding and scoring.

The model never knows which cache it runs with. Before a pass it asks the cache where the new
tokens stand (`prepare`: their positions, the attention mask, the RoPE frequencies), hands every
layer's new keys and values to it and attends to what it returns (`update`), and tells it when the
pass is over (`advance`). Implementations:

- `lmforge.generate.kv_cache.KVCache`: generation, one length per row;
- `lmforge.generate.kv_cache.DecodeView`: one fixed-shape decode step (compilable);
- `lmforge.eval.trie.TrieAttention` / `PrefixCapture`: scoring many requests in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from lmforge.model.attention import AttentionMask


@dataclass
class CacheStep:
    """What the cache tells the model about the tokens of one forward pass."""

    positions: torch.Tensor  # (B, n_new) RoPE positions of the new tokens
    mask: AttentionMask  # which cached and new keys each new token may attend to
    # The RoPE inverse frequencies (head_dim / 2,) to use, or the length that sets the dynamic-NTK
    # base (the model then computes them); with neither, max(positions) + 1.
    inv_freq: torch.Tensor | None = None
    rope_len: int | None = None


class KVCacheProtocol(Protocol):
    def prepare(self, n_new: int, padding_mask: torch.Tensor | None = None) -> CacheStep:
        """Positions, mask and RoPE length for the next `n_new` tokens of every row;
        padding_mask (B, n_new) marks real tokens, which come first in each row."""

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer `layer`'s new keys/values (B, Hkv, n_new, D); return the keys/values to attend to."""

    def advance(self, n_new: int) -> None:
        """The pass is over: the new tokens are part of the cache."""
