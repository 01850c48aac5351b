"""QK-norm (`model.qk_norm`, OLMo 2 / Qwen3): each head's query and key RMS-normalised and scaled by
a learned gain before RoPE. Checked against transformers' Qwen3 (which has the same QK-norm) on the
same weights, and through every cache layout. Export: tests/model/test_roundtrip.py (Llama format
refuses it); reward models: tests/align/test_reward.py."""


import pytest
import torch

from lmforge.generate import Engine, SamplingParams, generate
from lmforge.model import InternLM2, num_params
from lmforge.model.hf import to_llama_names
from tests.helpers import tiny_model


def normed(seed: int = 0, **kw) -> InternLM2:
    """A tiny QK-norm model whose gains differ per dimension and layer (init leaves them at 1)."""
    model = tiny_model(seed=seed, qk_norm=True, **kw)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for layer in model.layers:
            for norm in (layer.attention.q_norm, layer.attention.k_norm):
                norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=g))
    return model


def test_queries_and_keys_reach_attention_at_the_rms_of_their_gain():
    model = tiny_model(qk_norm=True)
    seen = {}

    def capture(q, k, v, mask):
        seen["q"], seen["k"] = q, k
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    attn = model.layers[1].attention
    attn.core = capture
    with torch.no_grad():
        attn.q_norm.weight.fill_(2.0)
        attn.k_norm.weight.fill_(0.5)
        model(torch.randint(3, 200, (2, 10)))
    # RoPE turns pairs of dimensions, so a head's norm is what the gain made it, token by token
    # (to within eps: the activations of a freshly initialised model are small).
    rms = lambda t: t.pow(2).mean(-1).sqrt()  # noqa: E731
    torch.testing.assert_close(rms(seen["q"]), torch.full_like(rms(seen["q"]), 2.0), atol=0, rtol=2e-3)
    torch.testing.assert_close(rms(seen["k"]), torch.full_like(rms(seen["k"]), 0.5), atol=0, rtol=2e-3)
    plain = tiny_model()
    assert model.num_params() == num_params(model.cfg) == plain.num_params() + 2 * 2 * 16  # 2 layers x 2 gains


def _qwen3(model: InternLM2):
    """transformers' Qwen3ForCausalLM holding `model`'s weights (Llama names plus q_norm / k_norm)."""
    transformers = pytest.importorskip("transformers")
    cfg = model.cfg
    sd = {k: v for k, v in model.state_dict().items() if "q_norm" not in k and "k_norm" not in k}
    named = to_llama_names(sd, cfg.replace(qk_norm=False))
    for i, layer in enumerate(model.layers):
        named[f"model.layers.{i}.self_attn.q_norm.weight"] = layer.attention.q_norm.weight.detach()
        named[f"model.layers.{i}.self_attn.k_norm.weight"] = layer.attention.k_norm.weight.detach()
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta} if cfg.rope_scaling == "none" else \
        {"rope_type": "dynamic", "factor": cfg.rope_scaling_factor, "rope_theta": cfg.rope_theta}
    hf_cfg = transformers.Qwen3Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.max_seq_len,
        rope_parameters=rope, tie_word_embeddings=False, attention_bias=False)
    hf = transformers.Qwen3ForCausalLM(hf_cfg).eval()
    hf.load_state_dict(named, strict=True)
    return hf


@pytest.mark.parametrize("ratio,scaling", [(1, "none"), (2, "dynamic")])
def test_logits_match_transformers_qwen3(ratio, scaling):
    model = normed(seed=ratio, ratio=ratio, rope_scaling=scaling)
    hf = _qwen3(model)
    # 48 tokens > max_seq_len 32: the dynamic-NTK base as well where enabled
    x = torch.randint(0, model.cfg.vocab_size, (3, 48), generator=torch.Generator().manual_seed(ratio))
    with torch.no_grad():
        assert (model(x) - hf(x).logits).abs().max().item() <= 1e-5


def _prompts(vocab, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def test_generation_and_the_paged_engine_equal_recompute():
    model = normed(seed=1)
    prompts = _prompts(model.cfg.vocab_size, [5, 11, 2, 8])
    params = SamplingParams(max_new_tokens=12)
    ref = [c.token_ids for c in generate(model, prompts, params, use_cache=False)]
    assert [c.token_ids for c in generate(model, prompts, params)] == ref
    engine = Engine(model, kv_blocks=64, block_size=4, max_batch=3)
    reqs = [engine.add(p, params) for p in prompts]
    got: dict = {}
    while engine.has_work():
        for ev in engine.step():
            if ev.token_id is not None:
                got.setdefault(ev.request_id, []).append(ev.token_id)
    assert [got[r.id] for r in reqs] == ref
