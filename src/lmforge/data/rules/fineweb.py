"""FineWeb's line-level document rules (Penedo et al. 2024).

Paper: WanJuan-CC, arXiv 2402.19282, stage 2; docs/papers.md §4.

Drop a document when fewer than 12% of its lines end in terminal punctuation, when more than
67% of its lines are short (<= 30 characters), when repeated lines hold more than 1% of its
characters, or when it has more than 0.3 line breaks per word (a list, not prose). All four
rules count characters and lines, so they apply to Chinese unchanged (words = characters there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.rules.gopher import duplicates
from lmforge.data.step import Filter
from lmforge.data.text import CJK_RE, TERMINAL_PUNCTUATION, split_words


def fineweb_reason(text: str, chinese: bool = False, line_punct_thr: float = 0.12, line_punct_exclude_zero: bool = False,
                   short_line_thr: float = 0.67, short_line_length: int = 30, char_duplicates_ratio: float = 0.01,
                   new_line_ratio: float = 0.3) -> str | None:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "fineweb_empty"
    ratio = sum(line.endswith(TERMINAL_PUNCTUATION) for line in lines) / len(lines)
    if ratio < line_punct_thr and not (ratio == 0 and line_punct_exclude_zero):
        return "fineweb_line_punct_ratio"
    if sum(len(line) <= short_line_length for line in lines) / len(lines) > short_line_thr:
        return "fineweb_short_line_ratio"
    body = len(text.replace("\n", ""))
    if body and duplicates(lines)[1] / body > char_duplicates_ratio:
        return "fineweb_char_dup_ratio"
    n_words = len(CJK_RE.findall(text)) + len(split_words(CJK_RE.sub(" ", text))) if chinese else len(split_words(text))
    if n_words and text.count("\n") / n_words > new_line_ratio:
        return "fineweb_list_ratio"
    return None


@dataclass
class FineWebRules(Filter):
    name: ClassVar[str] = "fineweb"
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = fineweb_reason(doc.text, doc.language == "zh", self.line_punct_thr, self.line_punct_exclude_zero,
                                self.short_line_thr, self.short_line_length, self.char_duplicates_ratio,
                                self.new_line_ratio)
        return (False, reason) if reason else True
