"""Abnormal characters (WanJuan-CC's rule stage): encoding damage.

Paper: WanJuan-CC, arXiv 2402.19282, stage 2; docs/papers.md §4.

Pages decoded with the wrong charset show U+FFFD replacement characters or UTF-8 read as Latin-1
("Ã©", "â€™", "ä¸­", or a lone "â" once the C1 controls are stripped). Both are counted per
character; a document above the ratio is dropped, whatever its language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Filter

# A UTF-8 lead byte (U+00C2..U+00EF as Latin-1) followed by a continuation byte (U+0080..U+00BF).
MOJIBAKE_RE = re.compile(r"[\u00c2-\u00ef][\u0080-\u00bf]")
# "’" (E2 80 99) read as Latin-1 is "â" + two C1 controls, which extractors strip: "âTis", "winkâd".
# Matched where an apostrophe belongs (contractions, "'Tis"), not in words such as "château".
LONE_A_CIRCUMFLEX_RE = re.compile(r"(?<=\w)â(?=(?:s|d|t|ll|re|ve|m)\b)|(?<!\w)â(?=[A-Z])")
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def encoding_damage(text: str) -> float:
    if not text:
        return 0.0
    bad = (text.count("\ufffd") + 2 * len(MOJIBAKE_RE.findall(text)) + len(CONTROL_RE.findall(text))
           + 2 * len(LONE_A_CIRCUMFLEX_RE.findall(text)))
    return bad / len(text)


@dataclass
class EncodingRule(Filter):
    name: ClassVar[str] = "encoding"
    max_damage_ratio: float = 0.005

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return (False, "encoding_errors") if encoding_damage(doc.text) > self.max_damage_ratio else True
