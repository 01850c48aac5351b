"""The InternLM2 decoder in plain PyTorch (no parallelism in here; see lmforge.train for that).

Notable features (InternLM2 report section 2.2, PAPERS.md sections 1 and 3):
- pre-norm RMSNorm blocks, SwiGLU feed-forward (`w1` gate, `w3` up, `w2` down), no biases;
- grouped-query attention with one packed `wqkv` projection laid out per kv group as
  `[q_0 .. q_{r-1}, k, v]`, exactly as the released checkpoints, so they load without reshuffling;
- RoPE with dynamic NTK scaling, positions restarting per packed document;
- untied output head, optionally Baichuan 2's NormHead (rows of the head normalised).

Module and parameter names mirror the InternLM2 checkpoints (`tok_embeddings`, `attention.wqkv`,
`feed_forward.w1`, ...), so the Hugging Face format is this state dict with a `model.` prefix.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.model.attention import AttentionMask, attend, build_mask, positions_from_documents
from lmforge.model.config import ModelConfig
from lmforge.model.loss import compute_dtype, linear_lm_loss
from lmforge.model.norm import rms_norm
from lmforge.model.rope import apply_rope, rope_cos_sin


def qkv_heads(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_kv_heads: int, head_dim: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (B, H, T, D) and k, v (B, Hkv, T, D), q and k rotated, from the packed `wqkv` output
    (B, T, Hkv * (group + 2) * D), laid out per kv group as [q_0 .. q_{group-1}, k, v]; cos/sin
    broadcast to (B, T, Hkv, group + 1, D). Shared by the model and the decode step."""
    B, T, _ = qkv.shape
    r = qkv.shape[-1] // (n_kv_heads * head_dim) - 2
    qkv = qkv.view(B, T, n_kv_heads, r + 2, head_dim)
    # split, not slices: its backward writes the gradients into one tensor.
    qk, v = qkv.split([r + 1, 1], dim=3)
    q, k = apply_rope(qk, cos, sin).split([r, 1], dim=3)  # each group's q and k heads rotated in one pass
    q = q.reshape(B, T, n_kv_heads * r, head_dim).transpose(1, 2)
    return q, k.squeeze(3).transpose(1, 2), v.squeeze(3).transpose(1, 2)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask,
                kv_cache=None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = qkv_heads(self.wqkv(x), cos, sin, self.n_kv_heads, self.head_dim)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)
        out = attend(q, k, v, mask)
        return self.wo(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg, layer_idx)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, cos, sin, mask, kv_cache=None):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, kv_cache)
        return x + self.feed_forward(self.ffn_norm(x))


class InternLM2(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)

    def init_weights(self, seed: int | None = None) -> None:
        """InternLM2-style init: N(0, init_std) for every matrix (embeddings: embed_init_std), ones
        for the norms."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            std = self.cfg.embed_init_std if name == "tok_embeddings.weight" else self.cfg.init_std
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)

    def head_weight(self) -> torch.Tensor:
        """The LM head matrix; with NormHead each vocabulary row is L2-normalised (Baichuan 2 2.4)."""
        w = self.output.weight
        return F.normalize(w, dim=-1) if self.cfg.norm_head else w

    def forward_hidden(self, input_ids: torch.Tensor, *, position_ids: torch.Tensor | None = None,
                       document_ids: torch.Tensor | None = None, kv_cache=None,
                       padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, dim).

        document_ids (B, T): packed documents, attention stays inside each and positions restart.
        kv_cache: a generation cache (see lmforge.generate.kv_cache); padding_mask (B, T) marks the
        real tokens of a left-padded batch fed to it.
        """
        B, T = input_ids.shape
        seq_len = None  # the length that sets the dynamic-NTK base: by default max(position) + 1
        if kv_cache is not None:
            position_ids, mask = kv_cache.prepare(T, padding_mask)
            seq_len = getattr(kv_cache, "seq_len", None)  # an int the cache tracks: no reduction per step
        else:
            mask = build_mask(document_ids, T, self.cfg.attn_backend, input_ids.device,
                              compute_dtype(self.tok_embeddings.weight))
            if position_ids is None:
                if document_ids is None:
                    position_ids, seq_len = torch.arange(T, device=input_ids.device).expand(B, T), T
                else:
                    position_ids = positions_from_documents(document_ids)
        cos, sin = rope_cos_sin(self.cfg, position_ids, seq_len)
        cos, sin = cos[:, :, None, None], sin[:, :, None, None]  # (B, T, 1, 1, head_dim): once for all layers
        h = self.tok_embeddings(input_ids)
        for layer in self.layers:
            h = layer(h, cos, sin, mask, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        return self.norm(h)

    def forward(self, input_ids: torch.Tensor, *, targets: torch.Tensor | None = None, z_loss: float = 0.0,
                last_only: bool = False, **kwargs):
        """Logits (B, T, vocab) in the model's dtype; keyword arguments as `forward_hidden`.

        targets (B, T): return `(loss, parts)` instead, the mean next-token loss plus `z_loss` times
        the max-z penalty, computed by `linear_lm_loss` without materialising the logits. Inside
        forward, so that FSDP has the head's weight gathered while the loss uses it.
        last_only: logits of the last position only, (B, 1, vocab), as a generation prefill needs.
        """
        h = self.forward_hidden(input_ids, **kwargs)
        if targets is not None:
            return linear_lm_loss(h, self.head_weight(), targets, z_loss)
        return F.linear(h[:, -1:] if last_only else h, self.head_weight())

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
