"""Tiny random InternLM2 models for fast CPU tests."""

from lmforge.model import InternLM2, ModelConfig


def tiny_config(ratio: int = 2, rope_scaling: str = "dynamic", **kw) -> ModelConfig:
    base = dict(vocab_size=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=4 // ratio, ffn_dim=160,
                rope_theta=10_000.0, rope_scaling=rope_scaling, rope_scaling_factor=2.0, max_seq_len=32)
    base.update(kw)
    return ModelConfig(**base)


def tiny_model(seed: int = 0, **kw) -> InternLM2:
    model = InternLM2(tiny_config(**kw))
    model.init_weights(seed)
    return model.eval()


# Options whose parameters a Llama checkpoint cannot hold, and those parameters' names.
NOT_LLAMA = {"smear_keys": ("attention.smear",), "qk_norm": ("attention.q_norm", "attention.k_norm")}


def tiny_model_with(option: str, seed: int = 0) -> InternLM2:
    """A tiny model with `option` on and its own parameters moved away from their initial values,
    so that an export or a path that drops them shows."""
    import torch

    model = tiny_model(seed=seed, **{option: True})
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(part in name for part in NOT_LLAMA[option]):
                p.add_(torch.randn(p.shape, generator=g))
    return model
