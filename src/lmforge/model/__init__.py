"""The InternLM2 model: config and presets, the plain PyTorch decoder, attention backends, the
language-modelling loss, and Hugging Face checkpoint formats (InternLM2 report, arXiv 2403.17297;
Baichuan 2, arXiv 2309.10305; docs/papers.md §1, §3)."""

from lmforge.model.config import PRESETS, ModelConfig, flops_per_token, num_params, preset
from lmforge.model.hf import CheckpointError, load_model, load_state_dict, read_config, save_model
from lmforge.model.loss import linear_lm_loss, lm_loss
from lmforge.model.model import InternLM2

__all__ = ["PRESETS", "ModelConfig", "InternLM2", "CheckpointError", "flops_per_token", "linear_lm_loss", "lm_loss",
           "load_model", "load_state_dict", "num_params", "preset", "read_config", "save_model"]
