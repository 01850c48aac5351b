"""Tokenizer statistics (InternLM2 reports its tokenizer's compression).

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1.

Bytes per token is the usual measure of how well a vocabulary fits a language: more UTF-8 bytes
per token means shorter sequences, so more text per context window and per unit of compute.
"""

from __future__ import annotations

from lmforge.tokenizer.tokenizer import Tokenizer


def bytes_per_token(tokenizer: Tokenizer, text: str) -> float:
    """UTF-8 bytes of `text` divided by the number of tokens it encodes to."""
    n_bytes = len(text.encode("utf-8"))
    if n_bytes == 0:
        raise ValueError("bytes_per_token needs non-empty text")
    return n_bytes / len(tokenizer.encode(text))
