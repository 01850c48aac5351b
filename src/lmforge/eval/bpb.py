"""Bits per UTF-8 byte of a text: the one figure that compares models with different tokenizers.

Loss per token depends on how much text a token holds, so a character-level model and a BPE model
cannot be compared by it; bits per byte can (the measure of nanoGPT / nanochat speedruns, and of the
Pile and GPT-4 compression comparisons). The recipe:

1. Tokenize the whole text once, and refuse a tokenizer that does not give the text back exactly
   (a lossy tokenizer, e.g. one that maps unknown characters to <unk> or normalizes Unicode, would
   be scored on a different, easier text).
2. Slide a window of the model's context over the tokens with a stride (half the context by
   default): each window scores only the tokens that no earlier window scored, so every token after
   the first is scored once, with between `context - stride` and `context - 1` tokens before it
   (Hugging Face's "perplexity of fixed-length models" recipe).
3. The first token has no context: it costs log2(vocabulary) bits, what a uniform guess costs.
4. Sum the negative log-likelihoods in float64 and divide by ln 2 and the text's UTF-8 length.

A model is anything with `logprobs(ids) -> (B, T-1)` for rows of token ids (B, T): lmforge models go
through `lmforge.model.logprobs.token_logprobs`; other models (a nanoGPT checkpoint, see
bench/race_nanogpt.py) pass their own function. No BOS is added: the windows are the text's tokens
only, so every model is scored on the same bytes with the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch

LogprobsFn = Callable[[torch.Tensor], torch.Tensor]


class TextTokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclass
class BitsPerByte:
    bpb: float  # bits per UTF-8 byte
    bits: float  # total bits of the text
    bytes: int  # UTF-8 bytes of the text
    tokens: int  # tokens of the text (the first one charged log2(vocab) bits)
    windows: int
    context: int
    stride: int
    vocab_size: int

    @property
    def bits_per_token(self) -> float:
        return self.bits / self.tokens

    def as_dict(self) -> dict:
        return {**asdict(self), "bits_per_token": self.bits_per_token}


def encode_lossless(tokenizer: TextTokenizer, text: str, name: str = "text") -> list[int]:
    """The text's token ids; a ValueError (naming the first difference) if decoding them does not give
    the text back."""
    ids = tokenizer.encode(text)
    back = tokenizer.decode(ids)
    if back != text:
        at = next((i for i, (a, b) in enumerate(zip(text, back)) if a != b), min(len(text), len(back)))
        raise ValueError(f"{name}: the tokenizer does not give the text back (first difference at character {at}: "
                         f"{text[at:at + 20]!r} became {back[at:at + 20]!r}); bits per byte needs a lossless "
                         "tokenizer (byte-level BPE, or a character vocabulary that covers the text)")
    if not ids:
        raise ValueError(f"{name}: the text is empty")
    return ids


def windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) of each window over `n_tokens` tokens: the window feeds tokens
    [begin, end) and scores the targets [first_scored, end), which no earlier window scored. Targets
    1 .. n_tokens - 1 are each scored exactly once."""
    if context < 2:
        raise ValueError(f"context = {context}: a window needs at least 2 tokens")
    if not 1 <= stride <= context - 1:
        raise ValueError(f"stride = {stride}: expected 1 .. context - 1 = {context - 1}")
    out, scored_to, begin = [], 1, 0  # targets before `scored_to` are done
    while scored_to < n_tokens:
        end = min(begin + context, n_tokens)
        out.append((begin, end, scored_to))
        scored_to = end
        begin += stride
    return out


@torch.inference_mode()
def bits_per_byte(logprobs: LogprobsFn, ids: Sequence[int], n_bytes: int, vocab_size: int, context: int,
                  stride: int | None = None, batch_size: int = 16, device: torch.device | str = "cpu",
                  progress: Callable[[int, int], None] | None = None) -> BitsPerByte:
    """Bits per byte of a tokenized text of `n_bytes` UTF-8 bytes, scored by `logprobs` in windows;
    `progress(windows scored, windows in all)` after each batch."""
    stride = stride or max(1, context // 2)
    spans = windows(len(ids), context, stride)
    ids_t = torch.tensor(list(ids), dtype=torch.long)
    nats = 0.0
    # Windows of one length batch together; only the last window can be shorter.
    for at in range(0, len(spans), batch_size):
        group = spans[at:at + batch_size]
        by_len: dict[int, list[tuple[int, int, int]]] = {}
        for span in group:
            by_len.setdefault(span[1] - span[0], []).append(span)
        for length, same in by_len.items():
            rows = torch.stack([ids_t[b:e] for b, e, _ in same]).to(device)
            lp = logprobs(rows).double().cpu()  # (B, length - 1): lp[:, j] scores token begin + j + 1
            if lp.shape != (len(same), length - 1):
                raise ValueError(f"logprobs returned shape {tuple(lp.shape)} for rows {tuple(rows.shape)}; "
                                 f"expected {(len(same), length - 1)}")
            for row, (b, _, first) in zip(lp, same):
                nats -= float(row[first - b - 1:].sum())
        if progress is not None:
            progress(len(group), len(spans))
    bits = nats / math.log(2) + math.log2(vocab_size)
    return BitsPerByte(bpb=bits / n_bytes, bits=bits, bytes=n_bytes, tokens=len(ids), windows=len(spans),
                       context=context, stride=stride, vocab_size=vocab_size)


def text_bits_per_byte(logprobs: LogprobsFn, tokenizer: TextTokenizer, text: str, context: int,
                       stride: int | None = None, name: str = "text", **kwargs) -> BitsPerByte:
    """Tokenize `text` losslessly, then `bits_per_byte`."""
    ids = encode_lossless(tokenizer, text, name)
    return bits_per_byte(logprobs, ids, len(text.encode("utf-8")), tokenizer.vocab_size, context, stride, **kwargs)


def model_logprobs(model) -> LogprobsFn:
    """The `logprobs` function of an lmforge model."""
    from lmforge.model.logprobs import token_logprobs

    return lambda rows: token_logprobs(model, rows)


def model_bits_per_byte(model, tokenizer, text: str, context: int | None = None, stride: int | None = None,
                        name: str = "text", **kwargs) -> BitsPerByte:
    """Bits per byte of an lmforge model and tokenizer on `text`, at the model's context by default."""
    context = context or model.cfg.max_seq_len
    device = next(model.parameters()).device
    return text_bits_per_byte(model_logprobs(model), tokenizer, text, context, stride, name=name, device=device,
                              **kwargs)


def run_bpb(checkpoint: str | Path, files: Sequence[str], *, context: int | None = None, stride: int | None = None,
            tokenizer: str | Path | None = None, device: str = "auto", max_chars: int | None = None,
            out: str | Path | None = None, batch_size: int = 16) -> dict[str, dict]:
    """`lmforge eval bpb`: bits per byte of a checkpoint on each text file; a table, and JSON with `out`."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from lmforge.atomic import write_json
    from lmforge.eval.lm import load_lm

    texts = {}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such text file")
        try:
            texts[str(path)] = path.read_text(encoding="utf-8")[:max_chars]
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lm = load_lm(checkpoint, tokenizer=tokenizer, device=device)
    context = context or lm.model.cfg.max_seq_len
    results = {}
    with Progress(transient=True) as bar:
        for name, text in texts.items():
            ids = encode_lossless(lm.tokenizer, text, name)
            task = bar.add_task(f"bpb {Path(name).name}", total=None)
            r = bits_per_byte(model_logprobs(lm.model), ids, len(text.encode("utf-8")), lm.tokenizer.vocab_size,
                              context, stride, batch_size=batch_size, device=next(lm.model.parameters()).device,
                              progress=lambda n, total, t=task: bar.update(t, total=total, advance=n))
            results[name] = r.as_dict()
    table = Table(title=f"bits per byte: {checkpoint} (context {context})")
    for col in ("text", "bytes", "tokens", "bytes/token", "bits/token", "bits/byte"):
        table.add_column(col, justify="left" if col == "text" else "right")
    for name, r in results.items():
        table.add_row(Path(name).name, f"{r['bytes']:,}", f"{r['tokens']:,}", f"{r['bytes'] / r['tokens']:.2f}",
                      f"{r['bits_per_token']:.3f}", f"{r['bpb']:.4f}")
    Console().print(table)
    if out is not None:
        write_json(Path(out), results)
    return results
