"""Export any training checkpoint (DCP, written by N processes) to a Hugging Face directory.

A checkpoint `<stage>/checkpoints/step_XXXXXXXX/` sits under the stage directory whose
`config.json` records the model and train settings; the weights are read from the DCP files into a
plain, unsharded model (DCP reassembles the shards of every process) and written with
`lmforge.model.save_model`, tokenizer files included.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

from lmforge.model import ModelConfig, save_model
from lmforge.model.hf import meta_model
from lmforge.tokenizer.hf_files import copy_tokenizer_files
from lmforge.train.checkpoint import _quiet_dcp


def is_training_checkpoint(path: str | Path) -> bool:
    return (Path(path) / "trainer_state.json").is_file() and (Path(path) / ".metadata").is_file()


def load_training_checkpoint_model(src: str | Path) -> tuple[torch.nn.Module, dict]:
    """(a plain model holding a DCP checkpoint's weights, its stage's settings)."""
    src = Path(src)
    stage_config = src.parent.parent / "config.json"
    if not stage_config.is_file():
        raise FileNotFoundError(f"{src}: the stage's config.json ({stage_config}) is missing; it records the model "
                                "dimensions the checkpoint was trained with")
    settings = json.loads(stage_config.read_text())
    model = meta_model(ModelConfig(**settings["model"])).to_empty(device="cpu")
    state = {"model": get_model_state_dict(model)}
    with _quiet_dcp():
        dcp.load(state, checkpoint_id=str(src))
    set_model_state_dict(model, state["model"])
    return model, settings


def export_training_checkpoint(src: str | Path, dst: str | Path, fmt: str = "internlm2",
                               dtype: torch.dtype | None = None) -> Path:
    model, settings = load_training_checkpoint_model(src)
    out = save_model(model, dst, fmt=fmt, dtype=dtype)
    tokenizer = settings.get("train", {}).get("tokenizer", "")
    if tokenizer:
        copy_tokenizer_files(tokenizer, out)
    return out
