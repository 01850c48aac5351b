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
