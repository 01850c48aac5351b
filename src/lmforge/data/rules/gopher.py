"""Gopher quality and repetition rules (Rae et al. 2021, table A1).

Paper: WanJuan-CC, arXiv 2402.19282, stage 2; docs/papers.md §4.

Defaults are the public Gopher thresholds (docs/papers.md §4). The formulas follow datatrove's
implementation of the same rules term by term (tests check that they agree), so numbers reported by
either tool compare (the n-gram counts run on numpy arrays of word ids rather than joined strings):
word counts exclude pure-punctuation tokens, the symbol ratio divides by all tokens, "alphabetic
words" means words with at least one letter, stop words are counted once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from lmforge.data.document import Document
from lmforge.data.step import Filter
from lmforge.data.text import is_symbol_word, split_words

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
PARAGRAPH_RE = re.compile(r"\n{2,}")
LINES_RE = re.compile(r"\n+")


def gopher_quality_reason(text: str, words: list[str], min_doc_words: int = 50, max_doc_words: int = 100_000,
                          min_avg_word_length: float = 3, max_avg_word_length: float = 10,
                          max_symbol_word_ratio: float = 0.1, max_bullet_lines_ratio: float = 0.9,
                          max_ellipsis_lines_ratio: float = 0.3, min_alpha_words_ratio: float = 0.8,
                          min_stop_words: int = 2, stop_words: frozenset[str] = frozenset(STOP_WORDS)) -> str | None:
    """The first Gopher quality rule `text` breaks, or None."""
    content = [w for w in words if not is_symbol_word(w)]
    if len(content) < min_doc_words:
        return "gopher_short_doc"
    if len(content) > max_doc_words:
        return "gopher_long_doc"
    avg = sum(map(len, content)) / len(content)
    if avg < min_avg_word_length:
        return "gopher_below_avg_word_length"
    if avg > max_avg_word_length:
        return "gopher_above_avg_word_length"
    n = len(words)
    if text.count("#") / n > max_symbol_word_ratio:
        return "gopher_too_many_hashes"
    if (text.count("...") + text.count("…")) / n > max_symbol_word_ratio:
        return "gopher_too_many_ellipsis"
    lines = text.splitlines() or [""]
    if sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines) > max_bullet_lines_ratio:
        return "gopher_too_many_bullets"
    if sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines) > max_ellipsis_lines_ratio:
        return "gopher_too_many_end_ellipsis"
    if sum(any(c.isalpha() for c in w) for w in words) / n < min_alpha_words_ratio:
        return "gopher_below_alpha_threshold"
    if len(stop_words.intersection(words)) < min_stop_words:
        return "gopher_enough_stop_words"
    return None


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated items, characters in the repeats), first occurrences not counted."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by the most frequent n-gram (joined by spaces) times its count; among
    equally frequent n-grams the first one seen (as `Counter.most_common` picks)."""
    if len(words) < n:
        return 0
    keys = _ngram_keys(_word_ids(words), n)
    uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
    best = counts.max()
    start = int(first[counts == best].min())
    return (sum(map(len, words[start:start + n])) + n - 1) * int(best)


def duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters in n-grams that repeat an earlier n-gram, skipping past each repeat."""
    if len(words) < n:
        return 0
    keys = _ngram_keys(_word_ids(words), n)
    if np.unique(keys).size == keys.size:   # no n-gram repeats: the common case, no loop needed
        return 0
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    gram_chars = np.convolve(lengths, np.ones(n, dtype=np.int64), mode="valid").tolist()
    keys = keys.tolist()
    seen: set[int] = set()
    chars = i = 0
    while i < len(keys):
        if keys[i] in seen:
            chars += gram_chars[i]
            i += n
        else:
            seen.add(keys[i])
            i += 1
    return chars


def _word_ids(words: list[str]) -> np.ndarray:
    ids: dict[str, int] = {}
    return np.fromiter((ids.setdefault(w, len(ids)) for w in words), dtype=np.uint64, count=len(words))


def _ngram_keys(ids: np.ndarray, n: int) -> np.ndarray:
    """One uint64 per n-gram of word ids (a polynomial in the ids; distinct n-grams of a document collide
    with probability ~ 2^-64 per pair)."""
    k = ids.size - n + 1
    key = np.zeros(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            key = key * np.uint64(0x100000001B3) + ids[j:j + k] + np.uint64(1)
    return key


def repetition_reason(text: str, words: list[str], dup_line_frac: float = 0.3, dup_para_frac: float = 0.3,
                      dup_line_char_frac: float = 0.2, dup_para_char_frac: float = 0.2,
                      top_ngrams: tuple = ((2, 0.20), (3, 0.18), (4, 0.16)),
                      dup_ngrams: tuple = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
                      prefix: str = "") -> str | None:
    """The first Gopher repetition rule `text` breaks (n-grams over `words`), or None."""
    if not text:
        return prefix + "empty"
    paragraphs = PARAGRAPH_RE.split(text.strip())
    n, chars = duplicates(paragraphs)
    if n / len(paragraphs) > dup_para_frac:
        return prefix + "dup_para_frac"
    if chars / len(text) > dup_para_char_frac:
        return prefix + "dup_para_char_frac"
    lines = LINES_RE.split(text)
    n, chars = duplicates(lines)
    if n / len(lines) > dup_line_frac:
        return prefix + "dup_line_frac"
    if chars / len(text) > dup_line_char_frac:
        return prefix + "dup_line_char_frac"
    for size, frac in top_ngrams:
        if top_ngram_chars(words, size) / len(text) > frac:
            return f"{prefix}top_{size}_gram"
    for size, frac in dup_ngrams:
        if duplicate_ngram_chars(words, size) / len(text) > frac:
            return f"{prefix}duplicated_{size}_n_grams"
    return None


@dataclass
class GopherQuality(Filter):
    """Gopher's quality heuristics (English by default)."""

    name: ClassVar[str] = "gopher_quality"
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: float = 3
    max_avg_word_length: float = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: list[str] = field(default_factory=lambda: list(STOP_WORDS))
    languages: list[str] = field(default_factory=lambda: ["en"])

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = gopher_quality_reason(
            doc.text, split_words(doc.text), self.min_doc_words, self.max_doc_words, self.min_avg_word_length,
            self.max_avg_word_length, self.max_symbol_word_ratio, self.max_bullet_lines_ratio,
            self.max_ellipsis_lines_ratio, self.min_alpha_words_ratio, self.min_stop_words, frozenset(self.stop_words))
        return (False, reason) if reason else True


@dataclass
class GopherRepetition(Filter):
    """Gopher's repetition rules over words (English by default)."""

    name: ClassVar[str] = "gopher_repetition"
    dup_line_frac: float = 0.3
    dup_para_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    dup_para_char_frac: float = 0.2
    top_ngrams: list[list[float]] = field(default_factory=lambda: [[2, 0.20], [3, 0.18], [4, 0.16]])
    dup_ngrams: list[list[float]] = field(default_factory=lambda: [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12],
                                                                   [9, 0.11], [10, 0.10]])
    languages: list[str] = field(default_factory=lambda: ["en"])
    reason_prefix: ClassVar[str] = ""

    def units(self, text: str) -> list[str]:
        """What the n-grams are made of: words."""
        return split_words(text)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = repetition_reason(doc.text, self.units(doc.text), self.dup_line_frac, self.dup_para_frac,
                                   self.dup_line_char_frac, self.dup_para_char_frac,
                                   tuple((int(n), f) for n, f in self.top_ngrams),
                                   tuple((int(n), f) for n, f in self.dup_ngrams), prefix=self.reason_prefix)
        return (False, reason) if reason else True
