"""Hugging Face checkpoint directories: the InternLM2 format and the Llama format.

InternLM2 format (InternLM2 report, arXiv 2403.17297; docs/papers.md §1): `config.json` with
`architectures: ["InternLM2ForCausalLM"]` and safetensors shards named `model.tok_embeddings.weight`,
`model.layers.{i}.attention.wqkv.weight` (packed per kv group `[q_0 .. q_{r-1}, k, v]`),
`...attention.wo`, `...feed_forward.w1/w3/w2`, `...attention_norm`, `...ffn_norm`, `model.norm`,
`output`. This is lmforge's own export format.

A tied model (`tie_embeddings`) stores its embedding once and says `tie_word_embeddings: true`, as
transformers writes such checkpoints; models with QK-norm or smeared keys have no Llama form.

Llama format: the same model with wqkv split into `q_proj`, `k_proj`, `v_proj` and the
transformers Llama names, so `transformers.AutoModelForCausalLM.from_pretrained(dir)` loads it with
no remote code. Both use the "rotate half" RoPE layout, so no permutation of q/k rows is needed.

Config keys are parsed strictly: a key we do not know is an error naming the file and the key,
because silently ignoring e.g. a bias flag or a new rope type gives a model that loads and is wrong.
Weights are read with safetensors (or `torch.load(weights_only=True)` for `.bin` shards), never
unpickled. Every file is written to a temporary name and renamed, so a killed export leaves no
half-written shard behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from lmforge.atomic import atomic_path, write_atomic
from lmforge.model.config import ModelConfig
from lmforge.model.model import InternLM2

CONFIG_NAME = "config.json"
SAFE_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
DEFAULT_SHARD_BYTES = 5 * 1024**3

# Keys that carry no information for the forward pass, accepted and ignored.
_IGNORED = {"architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype",
            "use_cache", "initializer_range", "attn_implementation", "_name_or_path", "pretraining_tp",
            "attention_dropout", "generation_config", "output_attentions", "output_hidden_states",
            "return_dict", "_attn_implementation_autoset", "lmforge",
            # a sequence classifier's head (reward models: lmforge.align.reward)
            "num_labels", "id2label", "label2id", "problem_type"}
_SHARED = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
           "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
           "rope_scaling", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"}
_KNOWN = {
    "internlm2": _SHARED | {"bias"},
    "llama": _SHARED | {"attention_bias", "mlp_bias", "head_dim", "rope_parameters"},
}
SMEAR_NOT_LLAMA = ("smear_keys: transformers' Llama has no smeared keys, so a Llama-format copy would load and "
                   "compute something else; save this model in the 'internlm2' format")
QK_NORM_NOT_LLAMA = ("qk_norm: transformers' Llama has no QK-norm, so a Llama-format copy would load and compute "
                     "something else; save this model in the 'internlm2' format")


def llama_refusal(cfg: ModelConfig) -> str | None:
    """Why a model with this config has no Llama form (None: it has one)."""
    return SMEAR_NOT_LLAMA if cfg.smear_keys else QK_NORM_NOT_LLAMA if cfg.qk_norm else None


# lmforge's own settings, stored under the "lmforge" key of config.json.
_LMFORGE_KEYS = {"z_loss", "init_std", "embed_init_std", "attn_backend", "smear_keys", "qk_norm"}

# Our parameter names (the InternLM2 names without the `model.` prefix) <-> Llama names; wqkv is
# handled separately because it splits into three tensors.
_LLAMA_NAMES = [
    ("tok_embeddings.weight", "model.embed_tokens.weight"),
    ("layers.{i}.attention.wo.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    ("layers.{i}.feed_forward.w1.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    ("layers.{i}.feed_forward.w3.weight", "model.layers.{i}.mlp.up_proj.weight"),
    ("layers.{i}.feed_forward.w2.weight", "model.layers.{i}.mlp.down_proj.weight"),
    ("layers.{i}.attention_norm.weight", "model.layers.{i}.input_layernorm.weight"),
    ("layers.{i}.ffn_norm.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    ("norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
]


def _rename(name: str, table: list[tuple[str, str]]) -> str | None:
    """Map `name` through a table of (source, target) templates with an optional `{i}` layer index."""
    for source, target in table:
        m = re.fullmatch(re.escape(source).replace(r"\{i\}", r"(?P<i>\d+)"), name)
        if m:
            return target.format(**m.groupdict())
    return None


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the file and what to do."""


# ----------------------------------------------------------------------------- config


def detect_format(config: dict, path: Path) -> str:
    archs = config.get("architectures") or []
    model_type = config.get("model_type", "")
    if "InternLM2ForCausalLM" in archs or model_type == "internlm2":
        return "internlm2"
    if "LlamaForCausalLM" in archs or model_type == "llama":
        return "llama"
    raise CheckpointError(f"{path}: architectures={archs} model_type={model_type!r} is neither InternLM2 "
                          "nor Llama; lmforge reads InternLM2ForCausalLM and LlamaForCausalLM checkpoints")


def config_from_hf(config: dict, path: Path) -> tuple[ModelConfig, str]:
    """ModelConfig from a parsed config.json (path is used in error messages)."""
    fmt = detect_format(config, path)
    unknown = sorted(set(config) - _KNOWN[fmt] - _IGNORED)
    if unknown:
        raise CheckpointError(f"{path}: unknown config key(s) {unknown} for a {fmt} checkpoint; lmforge "
                              "refuses to guess what they change. Remove them if they do not affect the model.")

    def bad(key, why):
        return CheckpointError(f"{path}: {key}={config.get(key)!r}: {why}")

    if config.get("hidden_act", "silu") != "silu":
        raise bad("hidden_act", "only SwiGLU with silu is supported")
    for key in ("bias", "attention_bias", "mlp_bias"):
        if config.get(key):
            raise bad(key, "InternLM2 has no biases; a checkpoint with biases is not supported")
    if config.get("tie_word_embeddings") not in (None, True, False):
        raise bad("tie_word_embeddings", "expected true or false")
    # Sizes first, with the file's own key names: a zero or a string here would otherwise surface as a
    # ZeroDivisionError or TypeError deep in the model code.
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings"):
        value = config.get(key)
        if value is not None and (type(value) is not int or value <= 0):
            raise bad(key, "expected a positive integer")
    for key in ("rms_norm_eps", "rope_theta"):
        if key in config and (type(config[key]) not in (int, float) or config[key] <= 0):
            raise bad(key, "expected a positive number")
    for key in ("rope_scaling", "rope_parameters"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise bad(key, 'expected a table such as {"type": "dynamic", "factor": 2.0}')
    dim, heads = config["hidden_size"], config["num_attention_heads"]
    if config.get("head_dim") not in (None, dim // heads):
        raise bad("head_dim", f"must equal hidden_size / num_attention_heads = {dim // heads}")

    scaling, factor, theta = _rope_settings(config, path)
    extra = config.get("lmforge", {})
    unknown_extra = sorted(set(extra) - _LMFORGE_KEYS)
    if unknown_extra:
        raise CheckpointError(f"{path}: unknown key(s) {unknown_extra} under 'lmforge'")
    try:
        cfg = ModelConfig(
            vocab_size=config["vocab_size"], dim=dim, n_layers=config["num_hidden_layers"], n_heads=heads,
            n_kv_heads=config.get("num_key_value_heads") or heads, ffn_dim=config["intermediate_size"],
            norm_eps=config.get("rms_norm_eps", 1e-6), rope_theta=theta, rope_scaling=scaling,
            rope_scaling_factor=factor, max_seq_len=config.get("max_position_embeddings", 2048),
            bos_token_id=_first(config.get("bos_token_id", 1)), eos_token_id=_first(config.get("eos_token_id", 2)),
            pad_token_id=_first(config.get("pad_token_id")) if config.get("pad_token_id") is not None
            else _first(config.get("eos_token_id", 2)),
            tie_embeddings=bool(config.get("tie_word_embeddings")),
            **extra,
        )
    except (TypeError, ValueError) as e:  # a combination ModelConfig refuses, e.g. heads that do not divide
        raise CheckpointError(f"{path}: {e}") from None
    return cfg, fmt


def _first(token_id):
    return token_id[0] if isinstance(token_id, list) else token_id


def _rope_settings(config: dict, path: Path) -> tuple[str, float, float]:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    theta = float(config.get("rope_theta", rope.get("rope_theta", 10000.0)))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind in ("default", None):
        return "none", 1.0, theta
    if kind == "dynamic":
        factor = rope.get("factor", 1.0)
        if type(factor) not in (int, float) or factor <= 0:
            raise CheckpointError(f"{path}: rope_scaling.factor={factor!r}: expected a positive number")
        return "dynamic", float(factor), theta
    raise CheckpointError(f"{path}: rope type {kind!r} is not supported (lmforge implements the default "
                          "and InternLM2's 'dynamic' NTK scaling)")


def config_to_hf(cfg: ModelConfig, fmt: str, dtype: torch.dtype) -> dict:
    rope_scaling = ({"type": "dynamic", "rope_type": "dynamic", "factor": cfg.rope_scaling_factor}
                    if cfg.rope_scaling == "dynamic" else None)
    common = {
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "hidden_act": "silu", "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "rope_scaling": rope_scaling,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id, "initializer_range": cfg.init_std, "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "lmforge": {"z_loss": cfg.z_loss, "init_std": cfg.init_std, "embed_init_std": cfg.embed_init_std,
                    "attn_backend": cfg.attn_backend, **({"smear_keys": True} if cfg.smear_keys else {}),
                    **({"qk_norm": True} if cfg.qk_norm else {})},
    }
    if fmt == "internlm2":
        return {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2", "bias": False, **common}
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
            "mlp_bias": False, "head_dim": cfg.head_dim, **common}


# ----------------------------------------------------------------------------- tensor names


def to_internlm2_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(k if k == "output.weight" else "model." + k): v for k, v in sd.items()}


def from_internlm2_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in sd.items()}


def to_llama_names(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Split each packed wqkv per kv group `[r x q, k, v]` and rename to transformers' Llama."""
    if why := llama_refusal(cfg):
        raise ValueError(why)
    r, hd = cfg.gqa_ratio, cfg.head_dim
    out = {}
    for name, t in sd.items():
        m = re.fullmatch(r"layers\.(\d+)\.attention\.wqkv\.weight", name)
        if m:
            groups = t.view(cfg.n_kv_heads, r + 2, hd, cfg.dim)
            prefix = f"model.layers.{m.group(1)}.self_attn."
            out[prefix + "q_proj.weight"] = groups[:, :r].reshape(cfg.n_heads * hd, cfg.dim).clone()
            out[prefix + "k_proj.weight"] = groups[:, r].reshape(cfg.n_kv_heads * hd, cfg.dim).clone()
            out[prefix + "v_proj.weight"] = groups[:, r + 1].reshape(cfg.n_kv_heads * hd, cfg.dim).clone()
            continue
        target = _rename(name, _LLAMA_NAMES)
        if target is None:
            raise KeyError(f"no Llama name for parameter {name!r}")
        out[target] = t
    return out


def from_llama_names(sd: dict[str, torch.Tensor], cfg: ModelConfig, path: Path) -> dict[str, torch.Tensor]:
    """Inverse of to_llama_names: rename and pack q/k/v back into wqkv per kv group."""
    r, hd = cfg.gqa_ratio, cfg.head_dim
    out, pending = {}, {}
    for name, t in sd.items():
        m = re.fullmatch(r"model\.layers\.(\d+)\.self_attn\.([qkv])_proj\.weight", name)
        if m:
            pending.setdefault(int(m.group(1)), {})[m.group(2)] = t
            continue
        target = _rename(name, [(theirs, ours) for ours, theirs in _LLAMA_NAMES])
        if target is None:
            # Silently dropping an unrecognised weight would hide a wrong checkpoint.
            raise CheckpointError(f"{path}: unexpected tensor {name!r} in a Llama checkpoint")
        out[target] = t
    for layer, qkv in pending.items():
        missing = {"q", "k", "v"} - set(qkv)
        if missing:
            raise CheckpointError(f"{path}: layer {layer} lacks {sorted(m + '_proj' for m in missing)}")
        q = qkv["q"].view(cfg.n_kv_heads, r, hd, cfg.dim)
        k = qkv["k"].view(cfg.n_kv_heads, 1, hd, cfg.dim)
        v = qkv["v"].view(cfg.n_kv_heads, 1, hd, cfg.dim)
        out[f"layers.{layer}.attention.wqkv.weight"] = torch.cat([q, k, v], dim=1).reshape(-1, cfg.dim)
    return out


# ----------------------------------------------------------------------------- reading


def read_config_json(path: Path, what: str = "a Hugging Face checkpoint directory") -> tuple[dict, Path]:
    """(config.json of the checkpoint directory `path` as a dict, its path); a clear error otherwise."""
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: no {CONFIG_NAME}; expected {what} (config.json + *.safetensors)")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_file}: expected a JSON object of config keys, got {type(config).__name__}")
    return config, cfg_file


def read_config(path: str | Path) -> tuple[ModelConfig, str]:
    path = Path(path)
    config, cfg_file = read_config_json(path)
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if k not in config]
    if missing:
        raise CheckpointError(f"{cfg_file}: missing required key(s) {missing}")
    return config_from_hf(config, cfg_file)


def _weight_files(path: Path) -> list[Path]:
    """The shard files of a checkpoint, checking that every shard its index names is present."""
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = path / index_name
        if index.is_file():
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [n for n in names if not (path / n).is_file()]
            if missing:
                raise CheckpointError(f"{index}: shard file(s) {missing} listed in the index are missing "
                                      f"from {path}; re-download or re-export the checkpoint")
            return [path / n for n in names]
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        files = sorted(path.glob(pattern))
        if files:
            return files
    raise CheckpointError(f"{path}: no weights found (expected model.safetensors, sharded *.safetensors "
                          "with model.safetensors.index.json, or pytorch_model*.bin)")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory, under their names in the files."""
    sd = {}
    for f in _weight_files(Path(path)):
        try:
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="pt") as st:
                    for name in st.keys():
                        sd[name] = st.get_tensor(name)
            else:
                sd.update(torch.load(f, map_location="cpu", weights_only=True))
        except Exception as e:  # safetensors and torch.load raise their own types for a damaged file
            raise CheckpointError(f"{f}: not a readable weights file ({type(e).__name__}: {e}); re-download "
                                  "or re-export the checkpoint") from None
    return sd


def load_state_dict(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, state dict in lmforge's names) from an InternLM2 or Llama checkpoint directory."""
    path = Path(path)
    cfg, fmt = read_config(path)
    raw = read_tensors(path)
    raw = {k: v for k, v in raw.items() if not k.endswith("rotary_emb.inv_freq")}  # recomputed buffers
    sd = from_internlm2_names(raw) if fmt == "internlm2" else from_llama_names(raw, cfg, path)
    if cfg.tie_embeddings:
        _tied_head(sd, path)
    _check_shapes(sd, cfg, path)
    return cfg, sd


def _tied_head(sd: dict[str, torch.Tensor], path: Path) -> None:
    """A tied checkpoint stores the embedding once (transformers drops `lm_head.weight` when it
    saves one); a head it does store must equal the embedding, or the file is not what its
    config says."""
    head, embedding = sd.get("output.weight"), sd.get("tok_embeddings.weight")
    if embedding is None:
        return  # _check_shapes names the missing embedding
    if head is not None and (head.shape != embedding.shape or not torch.equal(head, embedding)):
        raise CheckpointError(f"{path}: tie_word_embeddings is true but the output head differs from the input "
                              "embedding; set tie_word_embeddings to false in config.json, or re-export")
    sd["output.weight"] = embedding


def _check_shapes(sd: dict[str, torch.Tensor], cfg: ModelConfig, path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in meta_model(cfg).state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise CheckpointError(f"{path}: missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    extra = sorted(set(sd) - set(expected))
    if extra:
        raise CheckpointError(f"{path}: unexpected tensor(s) {extra[:5]} for a {cfg.n_layers}-layer model")
    for name, shape in expected.items():
        if tuple(sd[name].shape) != shape:
            raise CheckpointError(f"{path}: tensor {name!r} has shape {tuple(sd[name].shape)}, expected {shape} "
                                  "from config.json; the config and the weights disagree")


def meta_model(cfg: ModelConfig) -> InternLM2:
    """An InternLM2 with its parameters on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        return InternLM2(cfg)


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> InternLM2:
    """Build an lmforge model from an InternLM2 or Llama Hugging Face checkpoint directory."""
    cfg, sd = load_state_dict(path)
    model = meta_model(cfg)
    model.load_state_dict(sd, assign=True, strict=True)
    model.to(device=device, dtype=dtype)
    return model.eval()


# ----------------------------------------------------------------------------- writing


def export_state_dict(model: InternLM2) -> dict[str, torch.Tensor]:
    """The model's weights as a plain model would hold them: NormHead is baked into the head rows,
    so any loader (transformers' Llama included) reproduces our logits."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    if model.cfg.tie_embeddings:
        del sd["output.weight"]  # stored once, as transformers does (`tie_word_embeddings` in config.json)
    if model.cfg.norm_head:
        sd["output.weight"] = F.normalize(sd["output.weight"].float(), dim=-1).to(sd["output.weight"].dtype)
    return sd


def save_model(model: InternLM2, path: str | Path, fmt: str = "internlm2", dtype: torch.dtype | None = None,
                    max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write `model` as a Hugging Face checkpoint directory in the "internlm2" or "llama" format."""
    if fmt not in ("internlm2", "llama"):
        raise ValueError(f"format {fmt!r}: expected 'internlm2' or 'llama'")
    cfg = model.cfg.replace(norm_head=False)
    sd = export_state_dict(model)
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    dtype = next(iter(sd.values())).dtype
    named = to_internlm2_names(sd) if fmt == "internlm2" else to_llama_names(sd, cfg)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_shards(named, path, max_shard_bytes)
    write_atomic(path / CONFIG_NAME, json.dumps(config_to_hf(cfg, fmt, dtype), indent=2) + "\n")
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id}
    write_atomic(path / "generation_config.json", json.dumps(gen, indent=2) + "\n")
    return path


def write_shards(named: dict[str, torch.Tensor], path: Path, max_shard_bytes: int) -> None:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in named.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t.contiguous()
        size += nbytes
    for stale in list(path.glob("model*.safetensors")) + [path / SAFE_INDEX]:
        stale.unlink(missing_ok=True)  # a previous export with another shard count
    if len(shards) == 1:
        _atomic_save(shards[0], path / "model.safetensors")
        return
    n = len(shards)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{n:05d}.safetensors"
        _atomic_save(shard, path / fname)
        weight_map.update({k: fname for k in shard})
    total = sum(t.numel() * t.element_size() for t in named.values())
    write_atomic(path / SAFE_INDEX, json.dumps({"metadata": {"total_size": total},
                                                "weight_map": weight_map}, indent=2) + "\n")


def _atomic_save(tensors: dict[str, torch.Tensor], target: Path) -> None:
    with atomic_path(target) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
