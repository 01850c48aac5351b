"""InternViT, the vision encoder of InternVL (InternVL3, arXiv 2504.10479, section 2.1; InternVL,
arXiv 2312.14238, section 3.2; docs/papers.md §10), in plain PyTorch.

A ViT: a strided convolution cuts the tile into patches, a learned CLS token is prepended, learned
absolute position embeddings are added, then pre-norm blocks of bidirectional multi-head attention
(q/k/v projections, optional RMSNorm on q and k over the full width, as InternViT-6B) and a
GELU MLP, each residual branch scaled by a learned per-channel layer scale (lambda_1, lambda_2).
There is no final norm (InternViT's "mean pooling" variant, the one InternVL uses).

Module and parameter names are those of transformers' `InternVLVisionModel` (`embeddings.cls_token`,
`embeddings.patch_embeddings.projection`, `encoder.layer.{i}.attention.q_proj`, `...lambda_1`, ...),
so a checkpoint maps one to one, with only a prefix (lmforge.model.vision.hf).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.model.model import RMSNorm
from lmforge.model.vision.config import VisionConfig

# transformers' InternVL vision RMSNorm on q and k has a fixed eps, not the config's layer_norm_eps.
QK_NORM_EPS = 1e-6


def make_norm(cfg: VisionConfig, dim: int) -> nn.Module:
    if cfg.norm_type == "rms_norm":
        return RMSNorm(dim, cfg.norm_eps)
    return nn.LayerNorm(dim, eps=cfg.norm_eps)


class PatchEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.projection = nn.Conv2d(3, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, patches, dim), patches in row-major order."""
        return self.projection(pixel_values.to(self.projection.weight.dtype)).flatten(2).transpose(1, 2)


class Embeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.patch_embeddings = PatchEmbeddings(cfg)
        self.position_embeddings = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, cfg.dim))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        S = self.cfg.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, S, S):
            raise ValueError(f"pixel_values has shape {tuple(pixel_values.shape)}; expected (N, 3, {S}, {S}) tiles "
                             "(tile images to the vision config's image_size first)")
        x = self.patch_embeddings(pixel_values)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.position_embeddings


class Attention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.projection_layer = nn.Linear(cfg.dim, cfg.dim)
        self.q_norm = RMSNorm(cfg.dim, QK_NORM_EPS) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(cfg.dim, QK_NORM_EPS) if cfg.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, L, D = x.shape
        q, k, v = self.q_norm(self.q_proj(x)), self.k_norm(self.k_proj(x)), self.v_proj(x)
        q, k, v = (t.view(N, L, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # every patch sees every patch of its tile
        return self.projection_layer(out.transpose(1, 2).reshape(N, L, D))


class MLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.dim, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layernorm_before = make_norm(cfg, cfg.dim)
        self.attention = Attention(cfg)
        self.layernorm_after = make_norm(cfg, cfg.dim)
        self.mlp = MLP(cfg)
        self.lambda_1 = nn.Parameter(torch.full((cfg.dim,), cfg.layer_scale_init))
        self.lambda_2 = nn.Parameter(torch.full((cfg.dim,), cfg.layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.lambda_1 * self.attention(self.layernorm_before(x))
        return x + self.lambda_2 * self.mlp(self.layernorm_after(x))


class Encoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.n_layers))


class InternViT(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Last hidden state (N, 1 + patches, dim) of tiles (N, 3, S, S); position 0 is CLS."""
        x = self.embeddings(pixel_values)
        for block in self.encoder.layer:
            x = block(x)
        return x

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """N(0, init_std) for matrices, the convolution, CLS and position embeddings; zero biases;
        ones (and zero shifts) for norms; layer_scale_init for lambda_1/lambda_2."""
        std = self.cfg.init_std
        with torch.no_grad():
            for name, p in self.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf in ("lambda_1", "lambda_2"):
                    p.fill_(self.cfg.layer_scale_init)
                elif "norm" in name or "layernorm" in name:
                    p.fill_(1.0 if leaf == "weight" else 0.0)
                elif leaf == "bias":
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32) * std)


__all__ = ["InternViT", "VisionBlock"]
