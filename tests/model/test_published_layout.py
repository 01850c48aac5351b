"""A checkpoint laid out as the InternLM authors publish it converts correctly to Llama.

The fixture writes what a released InternLM2 directory holds (config.json with `auto_map`,
`rope_scaling: {"type": "dynamic", "factor": 2.0}`, bf16 weights in sharded safetensors with an
index) from random weights. The expected logits come from `reference_forward`, written here from
the semantics of the authors' modeling_internlm2.py (einops-style `b q (h gs d) -> b q h gs d`
split of wqkv, cos/sin cache rebuilt with the dynamic base, eager attention with repeat_kv),
independently of lmforge's model code. transformers' Llama then runs the converted directory.
"""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from lmforge.model.convert import convert

transformers = pytest.importorskip("transformers")

H, LAYERS, QH, KVH, FFN, V, MAXPOS, THETA = 64, 2, 8, 2, 96, 257, 24, 1_000_000.0
HD = H // QH


def published_config():
    return {
        "architectures": ["InternLM2ForCausalLM"],
        "attn_implementation": "eager",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
                     "AutoModel": "modeling_internlm2.InternLM2ForCausalLM"},
        "bias": False, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": H,
        "initializer_range": 0.02, "intermediate_size": FFN, "max_position_embeddings": MAXPOS,
        "model_type": "internlm2", "num_attention_heads": QH, "num_hidden_layers": LAYERS,
        "num_key_value_heads": KVH, "pad_token_id": 2, "rms_norm_eps": 1e-05,
        "rope_scaling": {"type": "dynamic", "factor": 2.0}, "rope_theta": THETA,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.41.0",
        "use_cache": True, "vocab_size": V,
    }


def published_weights(seed=0):
    g = torch.Generator().manual_seed(seed)

    def w(*shape, std=0.05):
        return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)

    sd = {"model.tok_embeddings.weight": w(V, H, std=1.0), "model.norm.weight": 1 + w(H), "output.weight": w(V, H)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        sd[p + "attention.wqkv.weight"] = w((QH + 2 * KVH) * HD, H)
        sd[p + "attention.wo.weight"] = w(H, QH * HD)
        sd[p + "feed_forward.w1.weight"] = w(FFN, H)
        sd[p + "feed_forward.w3.weight"] = w(FFN, H)
        sd[p + "feed_forward.w2.weight"] = w(H, FFN)
        sd[p + "attention_norm.weight"] = 1 + w(H)
        sd[p + "ffn_norm.weight"] = 1 + w(H)
    return sd


def write_published(path, sd):
    names = sorted(sd)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(halves, 1):
        fname = f"model-{i:05d}-of-00002.safetensors"
        save_file({n: sd[n] for n in part}, str(path / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (path / "config.json").write_text(json.dumps(published_config()))


def reference_forward(sd, ids):
    """InternLM2 forward as the published modeling code computes it (fp32, eager)."""
    sd = {k: v.float() for k, v in sd.items()}
    T = ids.shape[1]
    # Dynamic NTK cos/sin cache for the current length (InternLM2DynamicNTKScalingRotaryEmbedding).
    base = THETA
    if T > MAXPOS:
        base = THETA * ((2.0 * T / MAXPOS) - (2.0 - 1)) ** (HD / (HD - 2))
    inv_freq = 1.0 / (base ** (torch.arange(0, HD, 2).float() / HD))
    freqs = torch.outer(torch.arange(T).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def rot(x):
        x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    gs = QH // KVH + 2
    h = sd["model.tok_embeddings.weight"][ids]
    causal = torch.full((T, T), float("-inf")).triu(1)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        x = rms(h, sd[p + "attention_norm.weight"])
        qkv = (x @ sd[p + "attention.wqkv.weight"].T).view(1, T, KVH, gs, HD)  # b q h gs d
        q = qkv[..., : gs - 2, :].reshape(1, T, QH, HD).transpose(1, 2)
        k = qkv[..., -2, :].transpose(1, 2)
        v = qkv[..., -1, :].transpose(1, 2)
        q, k = rot(q), rot(k)
        k = k.repeat_interleave(QH // KVH, dim=1)
        v = v.repeat_interleave(QH // KVH, dim=1)
        att = (q @ k.transpose(-1, -2) / math.sqrt(HD) + causal).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(1, T, H)
        h = h + o @ sd[p + "attention.wo.weight"].T
        x = rms(h, sd[p + "ffn_norm.weight"])
        gate = torch.nn.functional.silu(x @ sd[p + "feed_forward.w1.weight"].T)
        h = h + (gate * (x @ sd[p + "feed_forward.w3.weight"].T)) @ sd[p + "feed_forward.w2.weight"].T
    return rms(h, sd["model.norm.weight"]) @ sd["output.weight"].T


@pytest.mark.parametrize("length", [16, 40])  # within the window, and beyond it (dynamic NTK)
def test_published_internlm2_converts_to_llama(tmp_path, length):
    src, dst = tmp_path / "internlm2", tmp_path / "llama"
    src.mkdir()
    sd = published_weights()
    write_published(src, sd)
    convert(src, dst, to="llama", dtype=torch.float32)
    hf = transformers.AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32).eval()
    ids = torch.randint(0, V, (1, length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference_forward(sd, ids)
        got = hf(ids).logits
    assert (expected - got).abs().max().item() <= 1e-4


def test_published_internlm2_roundtrips_through_llama(tmp_path):
    src = tmp_path / "internlm2"
    src.mkdir()
    sd = published_weights(seed=2)
    write_published(src, sd)
    convert(src, tmp_path / "llama", to="llama")
    convert(tmp_path / "llama", tmp_path / "back", to="internlm2")
    from lmforge.model.hf import read_tensors

    back = read_tensors(tmp_path / "back")
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)
