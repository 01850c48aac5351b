"""Configuration of the InternVL3-style vision-language model: the InternViT encoder's dimensions
(`VisionConfig`), and how the encoder, pixel shuffle, MLP projector and the InternLM2 decoder are put
together (`VLConfig`), with V2PE's position steps (InternVL3, arXiv 2504.10479, sections 2.1-2.2;
V2PE, arXiv 2412.09616, section 3; docs/papers.md §10).

`tiny_vl_config()` is the CPU demo: 64 px tiles of 8 px patches (an 8 x 8 grid), pixel shuffle 0.5
-> 16 image tokens per tile, on the "tiny" InternLM2 preset.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from lmforge.model.config import ModelConfig, preset

# V2PE's training choices for the visual position step: 1, 1/2, 1/4, ..., 1/256 (arXiv 2412.09616, 3.2).
DEFAULT_V2PE_DELTAS: tuple[float, ...] = tuple(1.0 / 2**k for k in range(9))


@dataclass
class VisionConfig:
    image_size: int = 448
    patch_size: int = 14
    dim: int = 1024
    n_layers: int = 24
    n_heads: int = 16
    mlp_dim: int = 4096
    # InternViT-300M uses LayerNorm; InternViT-6B uses RMSNorm with qk norm.
    norm_type: str = "layer_norm"
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    qk_norm: bool = False
    layer_scale_init: float = 0.1
    init_std: float = 0.02

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} must be a positive integer"
                    for name in ("image_size", "patch_size", "dim", "n_layers", "n_heads", "mlp_dim")
                    if not isinstance(getattr(self, name), numbers.Integral) or getattr(self, name) <= 0]
        if not problems:
            if self.image_size % self.patch_size:
                problems.append(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}")
            if self.dim % self.n_heads:
                problems.append(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.norm_type not in ("layer_norm", "rms_norm"):
            problems.append(f"norm_type={self.norm_type!r}: expected 'layer_norm' or 'rms_norm'")
        for name in ("norm_eps", "init_std"):
            if not isinstance(getattr(self, name), numbers.Real) or getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)!r} must be a positive number")
        if problems:
            raise ValueError("invalid vision config: " + "; ".join(problems))

    @property
    def grid(self) -> int:
        """Patches per side of a tile."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid ** 2

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def replace(self, **changes) -> VisionConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class VLConfig:
    vision: VisionConfig
    llm: ModelConfig
    image_token_id: int
    # Pixel shuffle: each side of the patch grid shrinks by this factor, channels grow by its inverse
    # squared (0.5: 1,024 patches of a 448 px tile -> 256 tokens of 4x the width).
    downsample_ratio: float = 0.5
    # V2PE (arXiv 2412.09616): visual tokens advance the position by delta; training draws delta per
    # image from these, inference uses v2pe_inference_delta (1.0: plain integer positions, as
    # transformers' InternVL, which has no V2PE).
    v2pe_deltas: tuple[float, ...] = field(default=DEFAULT_V2PE_DELTAS)
    v2pe_inference_delta: float = 1.0

    def __post_init__(self) -> None:
        self.v2pe_deltas = tuple(float(d) for d in self.v2pe_deltas)
        problems = []
        if not isinstance(self.image_token_id, numbers.Integral) or not 0 <= self.image_token_id < self.llm.vocab_size:
            problems.append(f"image_token_id={self.image_token_id!r} must be a token id in [0, {self.llm.vocab_size})")
        r = self.downsample_ratio
        inv = round(1 / r) if isinstance(r, numbers.Real) and 0 < r <= 1 else None
        if inv is None or abs(inv * r - 1) > 1e-9:
            problems.append(f"downsample_ratio={r!r} must be 1/k for a positive integer k (InternVL uses 0.5)")
        elif self.vision.grid % inv:
            problems.append(f"the {self.vision.grid}x{self.vision.grid} patch grid (image_size {self.vision.image_size}"
                            f" / patch_size {self.vision.patch_size}) is not divisible by 1/downsample_ratio={inv}")
        if not self.v2pe_deltas or any(not 0 < d <= 1 for d in self.v2pe_deltas):
            problems.append(f"v2pe_deltas={self.v2pe_deltas!r} must be a non-empty list of numbers in (0, 1]")
        if not isinstance(self.v2pe_inference_delta, numbers.Real) or not 0 < self.v2pe_inference_delta <= 1:
            problems.append(f"v2pe_inference_delta={self.v2pe_inference_delta!r} must be in (0, 1]")
        if problems:
            raise ValueError("invalid vision-language config: " + "; ".join(problems))

    @property
    def shuffle_factor(self) -> int:
        """1 / downsample_ratio: the side of the square of patches merged into one token."""
        return round(1 / self.downsample_ratio)

    @property
    def num_image_token(self) -> int:
        """Tokens per tile after pixel shuffle: (image_size / patch_size)^2 * downsample_ratio^2."""
        return self.vision.num_patches // self.shuffle_factor ** 2

    @property
    def projector_in_dim(self) -> int:
        return self.vision.dim * self.shuffle_factor ** 2

    def replace(self, **changes) -> VLConfig:
        return dataclasses.replace(self, **changes)


def tiny_vl_config(**llm_overrides) -> VLConfig:
    """The CPU demo: 64 px tiles, 8 px patches (64 patches -> 16 tokens), a 2-layer ViT of width 64 on
    the "tiny" InternLM2 preset; the image token is the last id of the vocabulary."""
    llm = preset("tiny", **llm_overrides)
    vision = VisionConfig(image_size=64, patch_size=8, dim=64, n_layers=2, n_heads=2, mlp_dim=256)
    return VLConfig(vision=vision, llm=llm, image_token_id=llm.vocab_size - 1)


__all__ = ["VisionConfig", "VLConfig", "DEFAULT_V2PE_DELTAS", "tiny_vl_config"]
