"""Small pure text functions shared by the rule filters and dedup.

Paper: WanJuan-CC, arXiv 2402.19282, stages 2-3; docs/papers.md §4.

English rules count *words* as the Gopher paper does: whitespace-separated tokens ("be," is one
word, with a letter in it). datatrove splits with spaCy instead, which makes every comma a word
with no letter: Shakespeare-like prose then fails the 80%-alphabetic rule by punctuation alone.
The rule formulas themselves agree with datatrove's given the same words (tests check both).
Chinese is written without spaces, so the Chinese rules and the Chinese shingles count characters.
"""

from __future__ import annotations

import re
import unicodedata

WORD_RE = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]+")
# Latin sentence ends need a following space (not "3.14"); Chinese ones are followed by text directly.
SENTENCE_END_RE = re.compile(r"[.!?]+['\"”’」』)]*(?=\s|$)|[。！？]+[”’」』）]*")
CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WHITESPACE_RE = re.compile(r"\s+")
# Terminal punctuation of a line or sentence, English and Chinese (C4 keeps lines ending in one).
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？", "…", "」", "』", "；")


def is_punctuation(ch: str) -> bool:
    """Unicode punctuation, symbols and control characters (what Gopher calls 'symbols')."""
    cat = unicodedata.category(ch)
    return cat[0] in "PSC" or ch in "\t\n\r"


def split_words(text: str) -> list[str]:
    return text.split()


def split_words_and_punctuation(text: str) -> list[str]:
    """Words and punctuation runs as separate tokens (spaCy/NLTK-like)."""
    return WORD_RE.findall(text)


def is_symbol_word(word: str) -> bool:
    return all(is_punctuation(c) for c in word)


def cjk_fraction(text: str) -> float:
    """Share of non-space characters that are CJK ideographs."""
    chars = len(text) - sum(map(str.isspace, text))
    return len(CJK_RE.findall(text)) / chars if chars else 0.0


def is_chinese_like(text: str, threshold: float = 0.3) -> bool:
    return cjk_fraction(text[:2000]) >= threshold


def sentences(text: str) -> list[str]:
    """A regex sentence splitter: ends at . ! ? (and Chinese 。！？) followed by space or end."""
    parts, start = [], 0
    for m in SENTENCE_END_RE.finditer(text):
        piece = text[start:m.end()].strip()
        if piece:
            parts.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def normalize_for_hash(text: str) -> str:
    """Exact-dedup key: NFKC, lower case, punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if is_punctuation(c) else c for c in text)
    return WHITESPACE_RE.sub(" ", text).strip()


def shingle_units(text: str) -> list[str]:
    """The units MinHash shingles are made of: words, or characters for Chinese-like text."""
    norm = normalize_for_hash(text)
    if is_chinese_like(norm):
        return [c for c in norm if not c.isspace()]
    return norm.split()

# C0 controls except tab/newline/CR, plus surrogates (which cannot be encoded to UTF-8).
CONTROL_CHARS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
