"""Rotary position embeddings with InternLM2's dynamic NTK scaling.

In InternLM2 (InternLM2 report, arXiv 2403.17297; docs/papers.md §1), when the current length L
exceeds the trained window Lmax, the RoPE base becomes
`base * ((s * L / Lmax) - (s - 1)) ** (d / (d - 2))` (s = scaling factor, d = head_dim).
This is the rule of InternLM2's released modeling code and of transformers' "dynamic" rope type.
The rotation is the "rotate half" form (first half of each head paired with the second half), the
layout of both the InternLM2 and the Hugging Face Llama checkpoints, so no permutation is needed
when converting between them.

L is taken as `max(position) + 1` over the batch, as transformers does; with packed documents the
positions restart per document, so L is the longest document, not the packed row.
"""

from __future__ import annotations

import functools

import torch

from lmforge.model.config import ModelConfig


def ntk_base(base: float, seq_len: torch.Tensor | int, max_seq_len: int, factor: float,
             head_dim: int) -> torch.Tensor | float:
    """The dynamic-NTK base for a sequence of `seq_len` tokens (unchanged while seq_len <= max)."""
    if isinstance(seq_len, torch.Tensor):
        # Tensor maths in float32, evaluated in the same order as transformers, for bitwise-close parity.
        seq_len = torch.clamp(seq_len, min=max_seq_len)
    else:
        seq_len = max(seq_len, max_seq_len)
    return base * ((factor * seq_len / max_seq_len) - (factor - 1)) ** (head_dim / (head_dim - 2))


def inv_frequencies(cfg: ModelConfig, seq_len: torch.Tensor | int | None = None,
                    device: torch.device | None = None) -> torch.Tensor:
    """Inverse frequencies (head_dim / 2,) for a sequence of `seq_len` tokens."""
    d = cfg.head_dim
    base = cfg.rope_theta
    if cfg.rope_scaling == "dynamic" and seq_len is not None:
        base = ntk_base(cfg.rope_theta, seq_len, cfg.max_seq_len, cfg.rope_scaling_factor, d)
    exponents = torch.arange(0, d, 2, dtype=torch.int64, device=device).float() / d
    return 1.0 / (base ** exponents)


@functools.lru_cache(maxsize=16)
def _fixed_inv_frequencies(theta: float, head_dim: int, device: torch.device) -> torch.Tensor:
    """Inverse frequencies at the unscaled base, computed once per (theta, head_dim, device), since
    decoding asks for them at every step. A normal tensor even when first made under inference_mode."""
    with torch.inference_mode(False), torch.no_grad():
        exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
        return 1.0 / (theta ** exponents)


def rope_inv_freq(cfg: ModelConfig, seq_len: torch.Tensor | int | None, device: torch.device) -> torch.Tensor:
    """The inverse frequencies `rope_cos_sin` uses for a sequence of `seq_len` tokens (the compiled
    decode step takes them as an input, so that dynamic NTK needs no recompilation)."""
    if cfg.rope_scaling != "dynamic" or (isinstance(seq_len, int) and seq_len <= cfg.max_seq_len):
        # Base unchanged; bitwise the same as the float32 formula below at L <= Lmax.
        return _fixed_inv_frequencies(cfg.rope_theta, cfg.head_dim, device)
    if isinstance(seq_len, int):  # the float32 tensor maths of a computed length, as transformers
        seq_len = torch.tensor(seq_len, device=device)
    return inv_frequencies(cfg, seq_len, device)


def rope_cos_sin(cfg: ModelConfig, positions: torch.Tensor, seq_len: torch.Tensor | int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (B, T, head_dim) for integer positions (B, T), in float32.

    `seq_len` is the length that decides the dynamic-NTK base; by default max(positions) + 1. A
    caller that knows it as a Python int (the KV cache does) saves the reduction, and inside the
    window (where the base is unchanged) the frequencies come from a cache.
    """
    if cfg.rope_scaling == "dynamic" and seq_len is None:
        seq_len = positions.max() + 1
    return cos_sin(positions, rope_inv_freq(cfg, seq_len, positions.device))


def cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (..., head_dim) of integer positions (...) at the given inverse frequencies:
    (head_dim / 2,) for every token, (B, head_dim / 2) for positions (B, T), one set per row (a
    server's requests each with the dynamic-NTK base of its own length), or (B, T, head_dim / 2),
    one per token (requests packed into one row)."""
    if inv_freq.dim() == 2:
        inv_freq = inv_freq[:, None, :]
    freqs = positions.float()[..., None] * inv_freq  # (..., d/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., D) by cos/sin (..., D) that broadcast to it; computed in x's dtype. The model
    rotates its q and k heads, laid out (B, T, kv_heads, group, D), by the (B, T, D) output of
    `rope_cos_sin` with two head axes added once per forward pass."""
    if cos.dtype != x.dtype:
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin
