"""Offline language identification with pycld2 (what WanJuan-CC used).

Paper: WanJuan-CC, arXiv 2402.19282, stage 1; docs/papers.md §4.

The language becomes `metadata["language"]` (ISO code; Chinese scripts fold into "zh") with
CLD2's percentage of the text as `language_score`; the top three languages and their shares
are kept in `languages` so that mixed-language pages stay visible in the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Filter
from lmforge.data.text import CONTROL_CHARS_RE

FOLD = {"zh-Hant": "zh", "zh": "zh", "un": "unknown", "xxx": "unknown"}


def detect_language(text: str) -> tuple[str, float, dict[str, int]]:
    """(language, share of the text in it in [0, 1], {language: percent}) for the top languages."""
    import pycld2

    clean = CONTROL_CHARS_RE.sub(" ", text).encode("utf-8", "ignore")
    try:
        reliable, _, details = pycld2.detect(clean)
    except pycld2.error:
        return "unknown", 0.0, {}
    shares: dict[str, int] = {}
    for _name, code, percent, _score in details:
        code = FOLD.get(code, code)
        if code != "unknown" and percent:
            shares[code] = shares.get(code, 0) + percent
    if not shares:
        return "unknown", 0.0, {}
    top = max(shares, key=shares.get)
    return top, shares[top] / 100.0, shares


@dataclass
class LanguageId(Filter):
    """Label each document; drop those not in `keep` or identified with less than `min_score`."""

    name: ClassVar[str] = "langid"
    keep: list[str] = field(default_factory=lambda: ["en", "zh"])
    min_score: float = 0.5

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        lang, score, shares = detect_language(doc.text)
        doc.metadata.update(language=lang, language_score=score, languages=shares)
        if self.keep and lang not in self.keep:
            return False, f"language_{lang}"
        if score < self.min_score:
            return False, "language_low_score"
        return True
