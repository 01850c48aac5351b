"""The vision-language model against transformers' InternVLForConditionalGeneration on weights
exported by save_vl_model, and the save -> load round trip (V2PE off: transformers has none)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmforge.model.hf import CheckpointError
from lmforge.model.vision import InternVL, load_vision_tower, load_vl_model, save_vl_model, tiny_vl_config, v2pe_position_ids

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "InternVLForConditionalGeneration"):
    pytest.skip("this transformers has no InternVL", allow_module_level=True)

VARIANTS = {
    # layer norm, no biases; 48 tokens > max_seq_len 32 so the dynamic-NTK base is exercised
    "layer_norm": dict(vision={}, llm=dict(max_seq_len=32)),
    # InternViT-6B style: RMSNorm, qk norm, q/k/v biases; GQA ratio 1, fixed RoPE base
    "rms_qk_norm": dict(vision=dict(norm_type="rms_norm", qk_norm=True, qkv_bias=True, n_heads=4),
                        llm=dict(n_kv_heads=4, rope_scaling="none")),
}


def random_model(variant: str, seed: int = 0, **cfg_changes) -> InternVL:
    base = tiny_vl_config(**VARIANTS[variant]["llm"])
    cfg = base.replace(vision=base.vision.replace(**VARIANTS[variant]["vision"]), **cfg_changes)
    model = InternVL(cfg)
    model.init_weights(seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # norms, biases, layer scales, CLS and positions away from their init values
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def inputs(cfg, seed=0):
    gen = torch.Generator().manual_seed(seed)
    k = cfg.num_image_token
    ids = torch.randint(3, 200, (2, 48), generator=gen)
    ids[0, 2:2 + 2 * k] = cfg.image_token_id  # row 0: a two-tile image
    ids[1, 10:10 + k] = cfg.image_token_id  # row 1: one tile
    return ids, torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size, generator=gen)


def hf_model(path):
    return transformers.InternVLForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_match_transformers_internvl(tmp_path, variant):
    model = random_model(variant)
    save_vl_model(model, tmp_path)
    hf = hf_model(tmp_path)
    ids, px = inputs(model.cfg)
    with torch.no_grad():
        ours = model(ids, px)
        theirs = hf(input_ids=ids, pixel_values=px).logits
        assert (model.image_features(px) - hf.get_image_features(pixel_values=px).pooler_output).abs().max() <= 1e-5
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_v2pe_is_not_in_transformers(tmp_path):
    """With delta < 1 our positions differ from transformers' integer ones, and so do the logits."""
    model = random_model("layer_norm")
    save_vl_model(model, tmp_path)
    ids, px = inputs(model.cfg)
    with torch.no_grad():
        ours = model(ids, px, position_ids=v2pe_position_ids(ids, model.cfg.image_token_id, 0.25))
        theirs = hf_model(tmp_path)(input_ids=ids, pixel_values=px).logits
    assert (ours - theirs).abs().max().item() > 1e-3


def test_round_trip(tmp_path):
    model = random_model("rms_qk_norm", seed=1, v2pe_inference_delta=0.5)
    save_vl_model(model, tmp_path)
    loaded = load_vl_model(tmp_path)
    # V2PE settings travel under config.json's "lmforge" key; a fixed RoPE base stores no factor
    assert loaded.cfg == model.cfg.replace(llm=model.cfg.llm.replace(rope_scaling_factor=1.0))
    sd = loaded.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    ids, px = inputs(model.cfg, seed=2)
    with torch.no_grad():
        assert torch.equal(model(ids, px), loaded(ids, px))


def test_reads_a_transformers_save_pretrained(tmp_path):
    model = random_model("layer_norm")
    save_vl_model(model, tmp_path / "ours")
    hf_model(tmp_path / "ours").save_pretrained(tmp_path / "theirs")
    ids, px = inputs(model.cfg)
    with torch.no_grad():
        assert torch.equal(load_vl_model(tmp_path / "theirs")(ids, px), model(ids, px))


def test_norm_head_is_baked_into_the_export(tmp_path):
    base = tiny_vl_config(norm_head=True)
    model = InternVL(base)
    model.init_weights(0)
    model.eval()
    with torch.no_grad():
        model.language_model.output.weight.mul_(7.0)
    save_vl_model(model, tmp_path)
    ids, px = inputs(base)
    with torch.no_grad():
        assert (model(ids, px) - load_vl_model(tmp_path)(ids, px)).abs().max() <= 1e-5


def test_reads_transformers_4_prefixes(tmp_path):
    model = random_model("layer_norm")
    save_vl_model(model, tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    legacy = {}
    for k, v in sd.items():
        k = ("language_model.lm_head.weight" if k == "lm_head.weight" else
             k.replace("model.language_model.", "language_model.model.").replace("model.vision_tower.", "vision_tower.")
             .replace("model.multi_modal_projector.", "multi_modal_projector."))
        legacy[k] = v
    save_file(legacy, tmp_path / "model.safetensors")
    ids, px = inputs(model.cfg)
    with torch.no_grad():
        assert torch.equal(load_vl_model(tmp_path)(ids, px), model(ids, px))


def test_vision_tower_loads_whatever_the_language_model(tmp_path):
    model = random_model("rms_qk_norm")
    save_vl_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["text_config"].update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])  # as InternVL3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="neither InternLM2 nor Llama"):
        load_vl_model(tmp_path)
    vit = load_vision_tower(tmp_path)
    assert vit.cfg == model.cfg.vision
    sd = vit.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in model.vision_model.state_dict().items())


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(model_type="llava"), "expected 'internvl'"),
    (lambda c: c["vision_config"].update(hidden_act="relu"), "hidden_act"),
    (lambda c: c["vision_config"].update(use_mean_pooling=False), "use_mean_pooling"),
    (lambda c: c.update(vision_feature_layer=-2), "vision_feature_layer"),
    (lambda c: c.update(mystery=1), "mystery"),
    (lambda c: c["vision_config"].update(hidden_size=96), "shape"),
])
def test_bad_checkpoints_are_clear_errors(tmp_path, edit, message):
    model = random_model("layer_norm")
    save_vl_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    edit(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_vl_model(tmp_path)
