"""A checkpoint opened for generation: the model on its device beside its tokenizer, and sampling
settings that stop where that tokenizer ends a reply.

`lmforge generate` / `chat`, the samples of `lmforge run` and the evaluation harness all generate
through `lmforge.generate`; they open checkpoints and add the stop tokens here, so each of them
stops at the same tokens (EOS and the chat format's end of turn).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.machine import resolve_device

if TYPE_CHECKING:
    import torch

    from lmforge.generate import SamplingParams
    from lmforge.model import InternLM2
    from lmforge.tokenizer import Tokenizer


def load_for_inference(path: str | Path, device: str | torch.device = "auto",
                       tokenizer: str | Path | None = None, dtype: torch.dtype | None = None
                       ) -> tuple[InternLM2, Tokenizer]:
    """The model of a checkpoint directory on `device` ("auto": CUDA when available) and the
    tokenizer saved with it (or the one in the `tokenizer` directory)."""
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer

    model = load_model(path, device=resolve_device(str(device)), dtype=dtype)
    return model, Tokenizer.load(tokenizer if tokenizer is not None else path)


def with_stop_ids(params: SamplingParams, tokenizer: Tokenizer) -> SamplingParams:
    """`params` that also stop at the tokenizer's stop tokens (EOS, the chat format's end of turn)."""
    stop_ids = tuple(dict.fromkeys([*params.stop_token_ids, *tokenizer.stop_ids]))
    return dataclasses.replace(params, stop_token_ids=stop_ids)
