"""`lmforge convert`: any supported checkpoint directory to the InternLM2 or the Llama HF format.

Sources: an InternLM2 checkpoint (lmforge's own export or one published by the InternLM authors,
with its `auto_map`, bf16 shards and dynamic `rope_scaling`) or a Llama-format one. The tokenizer
files beside the weights travel with them, so the converted directory is usable on its own.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lmforge.model.hf import load_model, save_model
from lmforge.tokenizer.hf_files import copy_tokenizer_files


def convert(src: str | Path, dst: str | Path, to: str, dtype: torch.dtype | None = None) -> Path:
    """Convert checkpoint `src` into `dst` in format `to` ("internlm2" or "llama"); dtype as stored
    unless given."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"convert: source and destination are the same directory ({src}); choose another DST")
    model = load_model(src)
    save_model(model, dst, fmt=to, dtype=dtype)
    copy_tokenizer_files(src, dst)
    return dst
