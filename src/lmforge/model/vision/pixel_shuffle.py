"""InternVL's pixel shuffle (InternVL 1.5, arXiv 2404.16821, section 3.1; InternVL3, arXiv
2504.10479, section 2.1; docs/papers.md §10): a space-to-depth step that merges each k x k square
of neighbouring patch features into one token of k^2 times the width (k = 1 / downsample_ratio), so a
448 px tile's 32 x 32 = 1,024 patches become 16 x 16 = 256 tokens.

The channel order is InternVL's (and transformers' `InternVLModel.pixel_shuffle`, "ps_version v2"):
reshape (N, w, h, c) -> (N, w, h/k, c*k), swap the two grid axes, reshape -> (N, h/k, w/k, c*k^2),
swap back. A projector trained on InternVL weights depends on exactly this order.
"""

from __future__ import annotations

import torch


def pixel_shuffle(x: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
    """(N, W, H, C) grid of features -> (N, W * s, H * s, C / s^2), s = scale_factor (InternVL's order)."""
    n, w, h, c = x.shape
    k = round(1 / scale_factor)
    if w % k or h % k:
        raise ValueError(f"pixel shuffle by {scale_factor}: the {w}x{h} grid is not divisible by {k}")
    x = x.reshape(n, w, h // k, c * k).permute(0, 2, 1, 3)
    x = x.reshape(n, h // k, w // k, c * k * k).permute(0, 2, 1, 3)
    return x.contiguous()


def shuffle_tokens(tokens: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
    """(N, L, C) patch tokens of a square grid (row-major, CLS already dropped) -> (N, L * s^2, C / s^2)."""
    n, length, c = tokens.shape
    side = round(length ** 0.5)
    if side * side != length:
        raise ValueError(f"{length} patch tokens do not form a square grid")
    x = pixel_shuffle(tokens.reshape(n, side, side, c), scale_factor)
    return x.reshape(n, x.shape[1] * x.shape[2], x.shape[3])  # explicit sizes: n may be 0


__all__ = ["pixel_shuffle", "shuffle_tokens"]
