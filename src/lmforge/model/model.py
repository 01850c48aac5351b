"""The InternLM2 decoder in plain PyTorch (no parallelism in here; see lmforge.train for that).

Notable features (InternLM2 report, arXiv 2403.17297, section 2.2; Baichuan 2, arXiv 2309.10305;
docs/papers.md §1, §3):
- pre-norm RMSNorm blocks, SwiGLU feed-forward (`w1` gate, `w3` up, `w2` down), no biases;
- grouped-query attention with one packed `wqkv` projection laid out per kv group as
  `[q_0 .. q_{r-1}, k, v]`, exactly as the released checkpoints, so they load without reshuffling;
- RoPE with dynamic NTK scaling, positions restarting per packed document;
- untied output head, optionally Baichuan 2's NormHead (rows of the head normalised);
- optionally QK-norm (`qk_norm`, OLMo 2 / Qwen3) and tied embeddings (`tie_embeddings`), for
  small models (docs/benchmarks.md, the race's ablations);
- optionally smeared keys (`smear_keys`, Olsson et al. 2022; not InternLM2's): each key mixes in the
  key of the token before it, so copying from the context forms sooner (docs/training.md);
- one forward for training, prefill, decoding and scoring: a KV cache decides positions, mask and
  RoPE from outside (lmforge.model.cache), a loss over the head runs inside forward as a callable,
  and the decode step's matmul kernels are a property of the linear layers (lmforge.model.linear);
- each attention layer's core (q, k, v, mask) -> out is an attribute, `attend` by default, so that
  a parallelism applied from outside can swap it (lmforge.train.seqpar: 2D sequence parallelism),
  with the positions and mask passed to forward by the caller.

Module and parameter names mirror the InternLM2 checkpoints (`tok_embeddings`, `attention.wqkv`,
`feed_forward.w1`, ...), so the Hugging Face format is this state dict with a `model.` prefix.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.model.attention import AttentionMask, attend, build_mask, positions_from_documents
from lmforge.model.cache import KVCacheProtocol
from lmforge.model.config import ModelConfig
from lmforge.model.linear import Linear, products
from lmforge.model.loss import compute_dtype, linear_lm_loss
from lmforge.model.norm import rms_norm
from lmforge.model.rope import apply_rope, cos_sin, rope_cos_sin


def qkv_heads(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_kv_heads: int, head_dim: int,
              qk_norm: tuple[torch.Tensor, torch.Tensor, float] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (B, H, T, D) and k, v (B, Hkv, T, D), q and k rotated, from the packed `wqkv` output
    (B, T, Hkv * (group + 2) * D), laid out per kv group as [q_0 .. q_{group-1}, k, v]; cos/sin
    broadcast to (B, T, Hkv, group + 1, D). qk_norm: (query gain (D,), key gain (D,), eps): each
    head's q and k RMS-normalised over D and scaled by its gain before RoPE (OLMo 2, Qwen3)."""
    B, T, _ = qkv.shape
    r = qkv.shape[-1] // (n_kv_heads * head_dim) - 2
    qkv = qkv.view(B, T, n_kv_heads, r + 2, head_dim)
    # split, not slices: its backward writes the gradients into one tensor (split_with_sizes: the
    # tensor method, without the Python wrapper of Tensor.split, which costs a decode step ~5%).
    qk, v = qkv.split_with_sizes([r + 1, 1], dim=3)
    if qk_norm is not None:  # every head of q and k at once, each row of the gains its own head's
        q_gain, k_gain, eps = qk_norm
        gains = torch.cat([q_gain.expand(r, head_dim), k_gain[None]])
        qk = F.rms_norm(qk, (head_dim,), eps=eps) * gains.to(qk.dtype)
    q, k = apply_rope(qk, cos, sin).split_with_sizes([r, 1], dim=3)  # each group's q and k rotated in one pass
    q = q.reshape(B, T, n_kv_heads * r, head_dim).transpose(1, 2)
    return q, k.squeeze(3).transpose(1, 2), v.squeeze(3).transpose(1, 2)


def smear_keys(k: torch.Tensor, gate: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
    """Smeared keys (Olsson et al. 2022, section 4): each key k_i (B, Hkv, S, D) becomes
    s k_i + (1 - s) k_p, s = sigmoid(gate[head]), where p is the key of the token before i in its
    sequence; a sequence's first token has none and keeps s k_i.

    prev says where that token is: None, key i - 1 for every i > 0 (one sequence per row); a bool
    (B, S), True where key i - 1 is it (packed rows); a long (B, S), its index, -1 for none (a trie,
    where a token follows its parent, not its left neighbour)."""
    if prev is None or prev.dtype == torch.bool:
        before = F.pad(k[:, :, :-1], (0, 0, 1, 0))
        if prev is not None:
            before = before * prev[:, None, :, None].to(k.dtype)
    else:
        index = prev.clamp(min=0)[:, None, :, None].expand(k.shape[0], k.shape[1], -1, k.shape[3])
        before = k.gather(2, index) * (prev >= 0)[:, None, :, None].to(k.dtype)
    s = torch.sigmoid(gate).to(k.dtype)[None, :, None, None]
    return s * k + (1 - s) * before


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
        self.wqkv = Linear(cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim)
        self.wo = Linear(cfg.n_heads * cfg.head_dim, cfg.dim)
        self.core = attend  # (q, k, v, mask) -> out; swapped from outside for a distributed attention
        self.smear = nn.Parameter(torch.zeros(cfg.n_kv_heads)) if cfg.smear_keys else None
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask,
                kv_cache: KVCacheProtocol | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        norm = (self.q_norm.weight, self.k_norm.weight, self.q_norm.eps) if self.q_norm is not None else None
        q, k, v = qkv_heads(self.wqkv(x), cos, sin, self.n_kv_heads, self.head_dim, norm)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # the cache keeps keys unsmeared
        if self.smear is not None:
            k = smear_keys(k, self.smear, mask.key_prev)
        out = self.core(q, k, v, mask)
        return self.wo(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = Linear(cfg.dim, cfg.ffn_dim)
        self.w3 = Linear(cfg.dim, cfg.ffn_dim)
        self.w2 = Linear(cfg.ffn_dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = products(x, self.w1, self.w3)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg, layer_idx)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin, mask, kv_cache=None):
        x = x + self._drop(self.attention(self.attention_norm(x), cos, sin, mask, kv_cache))
        return x + self._drop(self.feed_forward(self.ffn_norm(x)))

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, training=True) if self.dropout and self.training else x


class InternLM2(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = Linear(cfg.dim, cfg.vocab_size, norm_rows=cfg.norm_head)
        self.tie_weights()

    def tie_weights(self) -> None:
        """With `tie_embeddings`, make the head's weight the embedding's."""
        if self.cfg.tie_embeddings and getattr(self, "output", None) is not None:  # a reward model has no head
            self.output.weight = self.tok_embeddings.weight

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """nn.Module's, tied again afterwards: `assign=True` gives each module a tensor of its own."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.tie_weights()
        return result

    def init_weights(self, seed: int | None = None) -> None:
        """InternLM2-style init: N(0, init_std) for every matrix (embeddings, and a head tied to them:
        embed_init_std), ones for the norms."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            std = self.cfg.embed_init_std if name == "tok_embeddings.weight" else self.cfg.init_std
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith("attention.smear"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)

    def set_dropout(self, p: float) -> None:
        """Residual dropout p from now on (a checkpoint loads without it: it is not exported)."""
        self.cfg = self.cfg.replace(dropout=p)
        for layer in self.layers:
            layer.dropout = p

    def head_weight(self) -> torch.Tensor:
        """The LM head matrix; with NormHead each vocabulary row is L2-normalised (Baichuan 2 2.4)."""
        return self.output.effective_weight()

    def forward_hidden(self, input_ids: torch.Tensor | None = None, *, inputs_embeds: torch.Tensor | None = None,
                       position_ids: torch.Tensor | None = None, document_ids: torch.Tensor | None = None,
                       rope_len: int | torch.Tensor | None = None, kv_cache: KVCacheProtocol | None = None,
                       padding_mask: torch.Tensor | None = None, mask: object | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, dim): the one forward of training, prefill, decoding
        and scoring.

        input_ids (B, T), or inputs_embeds (B, T, dim) for inputs that are not all token embeddings
        (image tokens spliced into text).
        document_ids (B, T): packed documents; attention stays inside each and positions restart.
        position_ids (B, T): RoPE positions given by the caller (global offsets when a sequence is
        split over processes); default: 0, 1, ... per row, or per document. rope_len: the length
        that sets the dynamic-NTK base; default max(position_ids) + 1.
        kv_cache: a cache that decides positions, mask and RoPE itself (`lmforge.model.cache`);
        padding_mask (B, T) marks the real tokens of a right-padded batch fed to it.
        mask: what every layer's attention core gets, built by the caller (a sequence-parallel core
        takes the whole rows' documents, not this shard's); default `build_mask(document_ids)`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        h = self.tok_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if self.cfg.dropout and self.training:
            h = F.dropout(h, self.cfg.dropout, training=True)
        B, T = h.shape[:2]
        if kv_cache is not None:
            if position_ids is not None or document_ids is not None or mask is not None:
                raise ValueError("with a kv_cache the cache decides positions, documents and mask; "
                                 "pass none of position_ids, document_ids and mask")
            step = kv_cache.prepare(T, padding_mask)
            mask = step.mask
            if step.inv_freq is not None:
                cos, sin = cos_sin(step.positions, step.inv_freq)
            else:
                cos, sin = rope_cos_sin(self.cfg, step.positions, step.rope_len)
        else:
            if mask is None:
                mask = build_mask(document_ids, T, self.cfg.attn_backend, h.device, compute_dtype(h))
            if position_ids is None:
                if document_ids is None:
                    position_ids, rope_len = torch.arange(T, device=h.device).expand(B, T), rope_len or T
                else:
                    position_ids = positions_from_documents(document_ids)
            cos, sin = rope_cos_sin(self.cfg, position_ids, rope_len)
            if self.cfg.smear_keys and document_ids is not None:
                mask.key_prev = position_ids > 0
        cos, sin = cos[:, :, None, None], sin[:, :, None, None]  # (B, T, 1, 1, head_dim): once for all layers
        for layer in self.layers:
            h = layer(h, cos, sin, mask, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        return self.norm(h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head: logits (..., vocab) of final hidden states (..., dim)."""
        return self.output(hidden)

    def forward(self, input_ids: torch.Tensor | None = None, *, loss_fn=None, targets: torch.Tensor | None = None,
                z_loss: float = 0.0, last_only: bool = False, **kwargs):
        """Logits (B, T, vocab) in the model's dtype; keyword arguments as `forward_hidden`.

        loss_fn(hidden, head_weight): return its result instead of logits. A loss over the LM head
        runs here, inside forward, so that FSDP has the head's weight gathered while it is used
        (lmforge.train.losses holds the trainer's).
        targets (B, T): shorthand for the next-token loss, `(mean loss, parts)`: cross-entropy plus
        `z_loss` times the max-z penalty, by `linear_lm_loss`, without materialising the logits.
        last_only: logits of the last position only, (B, 1, vocab), as a generation prefill needs.
        """
        h = self.forward_hidden(input_ids, **kwargs)
        if loss_fn is not None:
            return loss_fn(h, self.head_weight())
        if targets is not None:
            return linear_lm_loss(h, self.head_weight(), targets, z_loss)
        return self.logits(h[:, -1:] if last_only else h)

    def linear_groups(self) -> list[list[Linear]]:
        """The linear layers in the order a forward uses them, those that read the same input grouped
        (the decode step multiplies by a group at once; see lmforge.model.linear)."""
        groups = []
        for layer in self.layers:
            a, f = layer.attention, layer.feed_forward
            groups += [[a.wqkv], [a.wo], [f.w1, f.w3], [f.w2]]
        return groups + [[self.output]]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
