"""The model as the harness sees it: text in, log-likelihoods or completions out.

`LanguageModel` is the whole interface a task needs (as lm-evaluation-harness's `LM`), so the
harness runs lmforge checkpoints, Hugging Face checkpoints loaded through lmforge's interop
(`load_model` reads InternLM2 and Llama directories) and the stub models of the tests alike.
Completions are asked for with the generation engine's own `SamplingParams` (the model adds its
tokenizer's stop tokens); `truncate` is the one evaluation-only choice beside them.
`load_lm` opens a checkpoint directory as an `LmforgeLM`, refusing one without a tokenizer up front.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch

from lmforge.eval.loglikelihood import loglikelihood
from lmforge.generate import SamplingParams


class LanguageModel(Protocol):
    name: str
    fingerprint: str  # identifies the weights, for the results cache

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      progress: Callable[[int], None] | None = None) -> list[tuple[float, bool]]: ...

    def generate(self, prompts: Sequence[str], params: SamplingParams,
                 progress: Callable[[int], None] | None = None, *, truncate: bool = True) -> list[str]:
        """Completions of `prompts`; `truncate` left-truncates prompts to the model's window
        (NIAH turns it off: its prompts are meant to run past the window)."""
        ...


class LmforgeLM:
    """An InternLM2 (lmforge) model and its tokenizer behind the `LanguageModel` interface."""

    def __init__(self, model, tokenizer, *, name: str = "model", fingerprint: str | None = None,
                 max_length: int | None = None, batch_size: int = 16, row_tokens: int | None = None,
                 batch_tokens: int = 8192):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.fingerprint = fingerprint or model_fingerprint(model)
        self.max_length = max_length or model.cfg.max_seq_len
        self.batch_size, self.row_tokens, self.batch_tokens = batch_size, row_tokens, batch_tokens

    def loglikelihood(self, requests, progress=None):
        return loglikelihood(self.model, self.tokenizer, requests, max_length=self.max_length,
                             row_tokens=self.row_tokens, batch_tokens=self.batch_tokens, progress=progress)

    def generate(self, prompts, params: SamplingParams, progress=None, *, truncate: bool = True) -> list[str]:
        from lmforge.generate import generate
        from lmforge.inference import with_stop_ids

        tok = self.tokenizer
        encoded = tok.encode_batch(list(prompts), add_bos=tok.bos_id is not None)
        if truncate:
            # As lm-eval, leave room for the completion, but keep at least half the window for the
            # prompt (a tiny model's window can be shorter than max_new_tokens). Keep BOS and the
            # most recent tokens: a long few-shot prompt loses its oldest shots.
            budget = max(self.max_length - params.max_new_tokens, self.max_length // 2, 2)
            encoded = [ids if len(ids) <= budget else ids[:1] + ids[len(ids) - budget + 1:] for ids in encoded]
        sampling = with_stop_ids(params, tok)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # similar lengths batch well
        out: list[str] = [""] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            completions = generate(self.model, [encoded[i] for i in chunk], sampling, tok)
            for i, c in zip(chunk, completions):
                out[i] = c.text
            if progress is not None:
                progress(len(chunk))
        return out


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the configuration and every parameter's bytes (for models built in memory)."""
    h = hashlib.sha256(repr(getattr(model, "cfg", "")).encode())
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def checkpoint_fingerprint(path: str | Path) -> str:
    """sha256 of a checkpoint directory's config.json, tokenizer files and weight files.

    Weight files are summarised by name, size and their first and last MiB, so a 20B checkpoint
    is fingerprinted in milliseconds; any retraining changes those bytes.
    """
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if not f.is_file():
            continue
        h.update(f.name.encode() + str(f.stat().st_size).encode())
        if f.suffix in (".json", ".model", ".txt"):
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin"):
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(f.stat().st_size - (1 << 20), 0))
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def find_tokenizer(checkpoint: Path, tokenizer: str | Path | None) -> Path:
    if tokenizer is not None:
        return Path(tokenizer)
    for name in ("tokenizer.json", "tokenizer.model"):
        if (checkpoint / name).is_file():
            return checkpoint
    raise FileNotFoundError(
        f"checkpoint {checkpoint} has no tokenizer: expected tokenizer.json or tokenizer.model in it. "
        "Save one there (`Tokenizer.save(dir)`, as `lmforge run` does) or pass --tokenizer DIR.")


def load_lm(path: str | Path, *, tokenizer: str | Path | None = None, device: str = "auto",
            dtype: torch.dtype | None = None, **kwargs) -> LmforgeLM:
    """An lmforge or Hugging Face (InternLM2 / Llama) checkpoint directory, ready to evaluate."""
    from lmforge.inference import load_for_inference

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint directory")
    model, tok = load_for_inference(path, device, tokenizer=find_tokenizer(path, tokenizer), dtype=dtype)
    if tok.vocab_size > model.cfg.vocab_size:
        raise ValueError(f"{path}: the tokenizer has {tok.vocab_size} tokens but the model only "
                         f"{model.cfg.vocab_size} embeddings; they do not belong together")
    return LmforgeLM(model, tok, name=path.name, fingerprint=checkpoint_fingerprint(path), **kwargs)
