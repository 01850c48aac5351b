"""Model configuration, the named InternLM2 presets, and the parameter count.

The dimensions are those of the released InternLM2 checkpoints (InternLM2 technical report,
arXiv 2403.17297, section 2 and table 1; docs/papers.md §1): 92,544 vocabulary, head_dim 128,
RMSNorm eps 1e-5, no biases, untied embeddings, RoPE theta 1,000,000 with dynamic NTK scaling
(factor 2.0) over a 32k window. `norm_head` and `z_loss` are Baichuan 2's NormHead and max-z loss
(arXiv 2309.10305, section 2.4; docs/papers.md §3).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass


@dataclass
class ModelConfig:
    vocab_size: int = 92544
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8
    ffn_dim: int = 14336
    norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0
    # Dynamic NTK: when a sequence is longer than max_seq_len the RoPE base grows (docs/papers.md §1).
    # "none" keeps the base fixed; "dynamic" applies the InternLM2 / transformers formula.
    rope_scaling: str = "dynamic"
    rope_scaling_factor: float = 2.0
    max_seq_len: int = 32768
    # Baichuan 2 NormHead: normalise the rows of the output embedding before the LM head.
    norm_head: bool = False
    # Baichuan 2 max-z loss coefficient (2e-4 in the paper); 0 disables it.
    z_loss: float = 0.0
    init_std: float = 0.02
    # Embedding init. InternLM2's released code uses init_std (0.02) for every matrix, which suits
    # dim 4096 and long runs. In a narrow model the blocks' outputs (RMS ~ init_std * sqrt(dim))
    # drown 0.02-scale embeddings in the residual stream and AdamW sits on the unigram plateau for
    # many steps; the CPU presets therefore start embeddings at unit scale.
    embed_init_std: float = 0.02
    # Residual dropout (the embeddings and each block's attention and feed-forward outputs), in
    # training mode only (nanoGPT's placement). InternLM2 pre-trains without dropout, so the default is
    # 0; it is for small models that read their data many times over (in the Shakespeare race, 0.1
    # did not help: docs/benchmarks.md). A training setting, not exported with the weights: a model
    # loaded from a checkpoint fine-tunes without it.
    dropout: float = 0.0
    # Smeared keys (Olsson et al. 2022, "In-context learning and induction heads", section 4): each
    # attention head's key at position j mixes in the key of position j - 1, sigma(a) k_j +
    # (1 - sigma(a)) k_{j-1}, with one learned a per kv head. An induction head then needs no
    # previous-token head before it, so copying from the context forms far sooner. A departure from
    # InternLM2 (off by default): Llama-format export refuses it.
    smear_keys: bool = False
    # QK-norm (OLMo 2, arXiv 2501.00656, section 3.2; Qwen3): RMSNorm over each head's query and key
    # before RoPE, one learned gain of head_dim per layer for the queries and one for the keys, so
    # attention logits cannot grow with the weights. A departure from InternLM2 (off by default);
    # Llama-format export refuses it.
    qk_norm: bool = False
    # Tied embeddings (GPT-2, nanoGPT, Llama 3.2 1B): the output head multiplies by the input
    # embedding matrix, initialised as the embedding (embed_init_std). InternLM2 unties them (the
    # default); exported with `tie_word_embeddings: true`, which transformers reads.
    tie_embeddings: bool = False
    # Attention backend for packed training batches: "auto", "sdpa", "flex" or "flash".
    attn_backend: str = "auto"
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 2

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} must be a positive integer"
                    for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len")
                    if not isinstance(getattr(self, name), numbers.Integral) or getattr(self, name) <= 0]
        if not problems:  # the divisibility checks need positive sizes
            if self.dim % self.n_heads:
                problems.append(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
            if self.n_heads % self.n_kv_heads:
                problems.append(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
            elif (self.dim // self.n_heads) % 2:
                problems.append(f"head_dim={self.dim // self.n_heads} must be even for RoPE")
        for name in ("norm_eps", "rope_theta", "rope_scaling_factor"):
            if not isinstance(getattr(self, name), numbers.Real) or getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)!r} must be a positive number")
        problems += [f"{name}={getattr(self, name)!r} must be true or false" for name in ("norm_head", "smear_keys", "qk_norm", "tie_embeddings")
                     if not isinstance(getattr(self, name), bool)]
        if self.norm_head is True and self.tie_embeddings is True:
            problems.append("norm_head with tie_embeddings: NormHead normalises the head's rows, which would "
                            "untie them from the embedding; set one of the two")
        if not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout!r} must be in [0, 1)")
        if self.rope_scaling not in ("none", "dynamic"):
            problems.append(f"rope_scaling={self.rope_scaling!r}: expected 'none' or 'dynamic'")
        if self.attn_backend not in ("auto", "sdpa", "flex", "flash"):
            problems.append(f"attn_backend={self.attn_backend!r}: expected auto, sdpa, flex or flash")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def gqa_ratio(self) -> int:
        return self.n_heads // self.n_kv_heads

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def num_params(cfg: ModelConfig, *, embeddings: bool = True) -> int:
    """Parameter count from the dimensions alone (matches `sum(p.numel())` of the built model)."""
    hd = cfg.head_dim
    attn = cfg.dim * (cfg.n_heads + 2 * cfg.n_kv_heads) * hd + cfg.n_heads * hd * cfg.dim
    ffn = 3 * cfg.dim * cfg.ffn_dim
    norms = 2 * cfg.dim
    smear = cfg.n_kv_heads if cfg.smear_keys else 0  # one gate per kv head
    qk_norm = 2 * hd if cfg.qk_norm else 0  # a gain for the queries, one for the keys
    total = cfg.n_layers * (attn + ffn + norms + smear + qk_norm) + cfg.dim  # + final norm
    if embeddings:  # the input embedding, and the output head unless it is the same matrix
        total += (1 if cfg.tie_embeddings else 2) * cfg.vocab_size * cfg.dim
    return total


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), the PaLM appendix-B count used
    for MFU: 6 * non-embedding params + 6 * vocab * dim (LM head) + 6 * layers * dim * seq for the
    attention scores and values. PaLM and nanochat write 12 * layers * dim * seq, which counts
    every query against every key; a causal model computes half of those (FlashAttention's
    convention), so counting them twice would credit work that is never done."""
    n = num_params(cfg, embeddings=False)
    return 6.0 * (n + cfg.vocab_size * cfg.dim) + 6.0 * cfg.n_layers * cfg.head_dim * cfg.n_heads * seq_len


# Released InternLM2 dimensions (InternLM2 report, arXiv 2403.17297; docs/papers.md §1). 1.8B and 20B
# from the public HF configs.
_INTERNLM2 = dict(vocab_size=92544, norm_eps=1e-5, rope_theta=1_000_000.0, rope_scaling="dynamic",
                  rope_scaling_factor=2.0, max_seq_len=32768)

PRESETS: dict[str, ModelConfig] = {
    "internlm2-1.8b": ModelConfig(dim=2048, n_layers=24, n_heads=16, n_kv_heads=8, ffn_dim=8192, **_INTERNLM2),
    "internlm2-7b": ModelConfig(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336, **_INTERNLM2),
    "internlm2-20b": ModelConfig(dim=6144, n_layers=48, n_heads=48, n_kv_heads=8, ffn_dim=16384, **_INTERNLM2),
    # CPU presets: the same architecture scaled down (GQA ratio 2, head_dim 32/64), short windows so
    # that dynamic NTK is exercised by the long-context stage of the demo.
    "tiny": ModelConfig(vocab_size=4096, dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=384,
                        rope_theta=10_000.0, max_seq_len=256, embed_init_std=1.0),
    "small": ModelConfig(vocab_size=8192, dim=256, n_layers=6, n_heads=8, n_kv_heads=4, ffn_dim=768,
                         rope_theta=10_000.0, max_seq_len=512, embed_init_std=1.0),
    # ~100M parameters for one GPU.
    "base-100m": ModelConfig(vocab_size=32768, dim=768, n_layers=12, n_heads=12, n_kv_heads=4, ffn_dim=2048,
                             rope_theta=50_000.0, max_seq_len=2048, embed_init_std=1.0),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named preset, optionally with some fields changed."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].replace(**overrides)


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(ModelConfig)]


__all__ = ["ModelConfig", "PRESETS", "preset", "num_params", "flops_per_token", "config_fields"]
