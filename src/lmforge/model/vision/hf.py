"""Hugging Face checkpoint directories for the vision-language model, in the layout transformers
loads natively as `InternVLForConditionalGeneration` (InternVL3, arXiv 2504.10479; docs/papers.md
§10): `config.json` with model_type "internvl", a `vision_config` ("internvl_vision"), a
`text_config` in the Llama format (lmforge.model.hf's conversion of the InternLM2 decoder, wqkv split
into q/k/v), and `model.safetensors` with

    model.vision_tower.*            the ViT, our names with a prefix (lmforge.model.vision.vit)
    model.multi_modal_projector.*   mlp1: layer_norm (0), linear_1 (1), linear_2 (3)
    model.language_model.*          the decoder in transformers' Llama names
    lm_head.weight                  the untied output head (NormHead baked in)

`load_vl_model` also reads transformers 4.x's prefixes (`vision_tower.`, `multi_modal_projector.`,
`language_model.model.`, `language_model.lm_head.`), the layout of the published "-hf" checkpoints.
Weights are read with safetensors only, never unpickled.

Differences from transformers' InternVL, documented here because they change no weight:
- V2PE is not in transformers. Its InternVL uses integer positions 0, 1, ..., which is V2PE with
  delta = 1; our `v2pe_inference_delta` (and the training deltas) are stored under the "lmforge" key
  of config.json and ignored by transformers. Logits agree only with V2PE off (delta 1).
- The vision attention is computed with SDPA; transformers' eager attention matches to float32
  rounding (the parity test checks 1e-5).
- No processor files (tokenizer, image processor) are written here: the image side of the processor
  (tiling, normalisation) belongs to lmforge.vl and the tokenizer to the tokenizer export.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lmforge.atomic import write_atomic
from lmforge.model.hf import (CONFIG_NAME, DEFAULT_SHARD_BYTES, CheckpointError, write_shards, config_from_hf,
                              config_to_hf, export_state_dict, from_llama_names, read_config_json, read_tensors,
                              to_llama_names)
from lmforge.model.vision.config import VisionConfig, VLConfig
from lmforge.model.vision.vit import InternViT
from lmforge.model.vision.vlm import InternVL

_PROJECTOR = [("mlp1.0.", "layer_norm."), ("mlp1.1.", "linear_1."), ("mlp1.3.", "linear_2.")]
VISION_PREFIX, PROJECTOR_PREFIX, LM_PREFIX = "model.vision_tower.", "model.multi_modal_projector.", "model.language_model."
# transformers 4.x checkpoints (the published InternVL3-*-hf) -> the current names.
_LEGACY_PREFIXES = [("language_model.model.", LM_PREFIX), ("language_model.lm_head.", "lm_head."),
                    ("vision_tower.", VISION_PREFIX), ("multi_modal_projector.", PROJECTOR_PREFIX)]

_IGNORED = {"architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
            "initializer_range", "use_cache", "lmforge", "tie_word_embeddings", "image_seq_length",
            "output_attentions", "output_hidden_states", "return_dict", "pad_token_id", "bos_token_id",
            "eos_token_id"}
_TOP_KEYS = {"vision_config", "text_config", "image_token_id", "downsample_ratio", "projector_hidden_act",
             "vision_feature_layer", "vision_feature_select_strategy"}
_VISION_KEYS = {"hidden_size", "num_hidden_layers", "num_attention_heads", "attention_bias", "use_qk_norm",
                "intermediate_size", "hidden_act", "norm_type", "layer_norm_eps", "image_size", "patch_size",
                "num_channels", "use_mask_token", "use_absolute_position_embeddings", "layer_scale_init_value",
                "use_mean_pooling", "hidden_dropout_prob", "attention_dropout", "projection_dropout"}
# Settings with one supported value: anything else changes the forward pass in a way we do not implement.
_VISION_FIXED = {"hidden_act": "gelu", "num_channels": 3, "use_absolute_position_embeddings": True,
                 "use_mean_pooling": True}
_TOP_FIXED = {"projector_hidden_act": "gelu", "vision_feature_layer": -1, "vision_feature_select_strategy": "default"}


# ----------------------------------------------------------------------------- config


def vision_config_to_hf(v: VisionConfig) -> dict:
    return {"model_type": "internvl_vision", "hidden_size": v.dim, "num_hidden_layers": v.n_layers,
            "num_attention_heads": v.n_heads, "intermediate_size": v.mlp_dim, "attention_bias": v.qkv_bias,
            "use_qk_norm": v.qk_norm, "norm_type": v.norm_type, "layer_norm_eps": v.norm_eps,
            "image_size": [v.image_size, v.image_size], "patch_size": [v.patch_size, v.patch_size],
            "layer_scale_init_value": v.layer_scale_init, "initializer_range": v.init_std,
            "use_mask_token": False, "hidden_dropout_prob": 0.0, "attention_dropout": 0.0,
            "projection_dropout": 0.0, **_VISION_FIXED}


def vl_config_to_hf(cfg: VLConfig, dtype: torch.dtype) -> dict:
    text = config_to_hf(cfg.llm.replace(norm_head=False), "llama", dtype)
    return {"architectures": ["InternVLForConditionalGeneration"], "model_type": "internvl",
            "vision_config": vision_config_to_hf(cfg.vision), "text_config": text,
            "image_token_id": cfg.image_token_id, "image_seq_length": cfg.num_image_token,
            "downsample_ratio": cfg.downsample_ratio, "tie_word_embeddings": False,
            "torch_dtype": str(dtype).removeprefix("torch."), **_TOP_FIXED,
            "lmforge": {"v2pe_deltas": list(cfg.v2pe_deltas), "v2pe_inference_delta": cfg.v2pe_inference_delta}}


def _square(value, key: str, where: Path) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise CheckpointError(f"{where}: vision_config.{key}={value!r}: only square sizes are supported")
        value = value[0]
    if type(value) is not int or value <= 0:
        raise CheckpointError(f"{where}: vision_config.{key}={value!r}: expected a positive integer")
    return value


def _check_keys(section: dict, known: set, fixed: dict, where: Path, name: str) -> None:
    unknown = sorted(set(section) - known - _IGNORED)
    if unknown:
        raise CheckpointError(f"{where}: unknown key(s) {unknown} in {name}; lmforge refuses to guess what they "
                              "change. Remove them if they do not affect the model.")
    for key, value in fixed.items():
        if key in section and section[key] != value:
            raise CheckpointError(f"{where}: {name}.{key}={section[key]!r}: only {value!r} is supported")


def vision_config_from_hf(v: dict, where: Path) -> VisionConfig:
    _check_keys(v, _VISION_KEYS, _VISION_FIXED, where, "vision_config")
    if v.get("use_mask_token"):
        raise CheckpointError(f"{where}: vision_config.use_mask_token=true is not supported")
    try:
        return VisionConfig(
            image_size=_square(v.get("image_size", 448), "image_size", where),
            patch_size=_square(v.get("patch_size", 14), "patch_size", where),
            dim=v.get("hidden_size", 1024), n_layers=v.get("num_hidden_layers", 24),
            n_heads=v.get("num_attention_heads", 16), mlp_dim=v.get("intermediate_size", 4096),
            norm_type=v.get("norm_type", "layer_norm"), norm_eps=v.get("layer_norm_eps", 1e-6),
            qkv_bias=bool(v.get("attention_bias", False)), qk_norm=bool(v.get("use_qk_norm", False)),
            layer_scale_init=v.get("layer_scale_init_value", 0.1), init_std=v.get("initializer_range", 0.02))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None


def vl_config_from_hf(config: dict, where: Path) -> VLConfig:
    if config.get("model_type") != "internvl":
        raise CheckpointError(f"{where}: model_type={config.get('model_type')!r}; expected 'internvl' "
                              "(an InternVLForConditionalGeneration checkpoint)")
    _check_keys(config, _TOP_KEYS, _TOP_FIXED, where, "config")
    if config.get("tie_word_embeddings"):
        raise CheckpointError(f"{where}: tie_word_embeddings=true: the InternLM2 decoder unties its head")
    v = config.get("vision_config")
    t = config.get("text_config")
    if not isinstance(v, dict) or not isinstance(t, dict):
        raise CheckpointError(f"{where}: vision_config and text_config must both be JSON objects")
    vision = vision_config_from_hf(v, where)
    llm, _ = config_from_hf(t, where)
    extra = config.get("lmforge", {})
    try:
        return VLConfig(vision=vision, llm=llm, image_token_id=config.get("image_token_id", 151667),
                        downsample_ratio=config.get("downsample_ratio", 0.5), **extra)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None


# ----------------------------------------------------------------------------- tensor names


def to_hf_names(model: InternVL) -> dict[str, torch.Tensor]:
    cfg = model.cfg
    out = {VISION_PREFIX + k: v.detach() for k, v in model.vision_model.state_dict().items()}
    for k, v in model.mlp1.state_dict().items():
        ours = "mlp1." + k
        for src, dst in _PROJECTOR:
            if ours.startswith(src):
                out[PROJECTOR_PREFIX + dst + ours.removeprefix(src)] = v.detach()
    llama = to_llama_names(export_state_dict(model.language_model), cfg.llm.replace(norm_head=False))
    for k, v in llama.items():
        out[k if k == "lm_head.weight" else LM_PREFIX + k.removeprefix("model.")] = v
    return out


def from_hf_names(sd: dict[str, torch.Tensor], cfg: VLConfig, where: Path) -> dict[str, torch.Tensor]:
    """HF InternVL tensor names (current or transformers 4.x) -> InternVL.state_dict() names."""
    out, llama = {}, {}
    for name, t in sd.items():
        for old, new in _LEGACY_PREFIXES:
            if name.startswith(old):
                name = new + name.removeprefix(old)
                break
        if name.startswith(VISION_PREFIX):
            out["vision_model." + name.removeprefix(VISION_PREFIX)] = t
        elif name.startswith(PROJECTOR_PREFIX):
            rest = name.removeprefix(PROJECTOR_PREFIX)
            match = [src + rest.removeprefix(dst) for src, dst in _PROJECTOR if rest.startswith(dst)]
            if not match:
                raise CheckpointError(f"{where}: unexpected projector tensor {name!r}")
            out[match[0]] = t
        elif name.startswith(LM_PREFIX):
            llama["model." + name.removeprefix(LM_PREFIX)] = t
        elif name == "lm_head.weight":
            llama[name] = t
        elif not name.endswith("rotary_emb.inv_freq"):
            raise CheckpointError(f"{where}: unexpected tensor {name!r} in an InternVL checkpoint")
    for k, v in from_llama_names(llama, cfg.llm, where).items():
        out["language_model." + k] = v
    return out


# ----------------------------------------------------------------------------- save / load


def save_vl_model(model: InternVL, path: str | Path, dtype: torch.dtype | None = None,
                  max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write `model` as a directory transformers loads with InternVLForConditionalGeneration."""
    named = to_hf_names(model)
    if dtype is not None:
        named = {k: v.to(dtype) for k, v in named.items()}
    dtype = named["lm_head.weight"].dtype
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_shards(named, path, max_shard_bytes)
    write_atomic(path / CONFIG_NAME, json.dumps(vl_config_to_hf(model.cfg, dtype), indent=2) + "\n")
    llm = model.cfg.llm
    gen = {"bos_token_id": llm.bos_token_id, "eos_token_id": llm.eos_token_id, "pad_token_id": llm.pad_token_id}
    write_atomic(path / "generation_config.json", json.dumps(gen, indent=2) + "\n")
    return path


def _read_json(path: Path) -> tuple[dict, Path]:
    return read_config_json(path, "an InternVL checkpoint directory")


def read_vl_config(path: str | Path) -> VLConfig:
    return vl_config_from_hf(*_read_json(Path(path)))


def _safetensors_only(path: Path) -> None:
    if not list(path.glob("*.safetensors")):
        raise CheckpointError(f"{path}: no *.safetensors weights; lmforge reads InternVL weights only from "
                              "safetensors (convert pytorch_model.bin with transformers' save_pretrained)")


def load_vision_tower(path: str | Path) -> InternViT:
    """Only the ViT of an InternVL checkpoint, whatever its language model (a published InternVL3
    pairs InternViT with Qwen2.5, which this decoder does not load): to start a new model's vision
    tower from pretrained weights, `model.vision_model.load_state_dict(load_vision_tower(dir).state_dict())`."""
    path = Path(path)
    config, where = _read_json(path)
    if config.get("model_type") != "internvl" or not isinstance(config.get("vision_config"), dict):
        raise CheckpointError(f"{where}: model_type={config.get('model_type')!r}; expected an 'internvl' config "
                              "with a vision_config")
    vcfg = vision_config_from_hf(config["vision_config"], where)
    _safetensors_only(path)
    sd = {}
    for name, t in read_tensors(path).items():
        for old, new in _LEGACY_PREFIXES:
            if name.startswith(old):
                name = new + name.removeprefix(old)
                break
        if name.startswith(VISION_PREFIX):
            sd[name.removeprefix(VISION_PREFIX)] = t
    model = InternViT(vcfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the vision tower's tensors do not match vision_config ({e})") from None
    return model.eval()


def load_vl_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> InternVL:
    """An InternVL from a Hugging Face InternVL directory (safetensors weights only)."""
    path = Path(path)
    cfg = read_vl_config(path)
    _safetensors_only(path)
    sd = from_hf_names(read_tensors(path), cfg, path)
    with torch.device("meta"):
        model = InternVL(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, extra = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: missing tensor(s) {missing[:5]}, unexpected tensor(s) {extra[:5]}")
    for name, shape in expected.items():
        if tuple(sd[name].shape) != shape:
            raise CheckpointError(f"{path}: tensor {name!r} has shape {tuple(sd[name].shape)}, expected {shape} "
                                  "from config.json; the config and the weights disagree")
    model.load_state_dict(sd, assign=True, strict=True)
    return model.to(device=device, dtype=dtype).eval()


__all__ = ["save_vl_model", "load_vl_model", "load_vision_tower", "read_vl_config", "vl_config_to_hf", "vl_config_from_hf"]
