"""Main-text extraction from HTML, and unique ids.

Paper: WanJuan-CC, arXiv 2402.19282, stage 1 ("format"); docs/papers.md §4.

WanJuan-CC extracts the main text of each page with Trafilatura; Resiliparse's main-content
extractor is the faster option (benchmarked in docs/data.md). Navigation, footers and ads are
what both try to remove; what they leave is checked by the rule stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Filter, Step

BACKENDS = ("trafilatura", "resiliparse")
# Each extractor's options, named so that bench/data_bench.py gives datatrove's extractors the same ones.
TRAFILATURA_OPTIONS = {"include_comments": False, "include_tables": False, "deduplicate": False,
                       "favor_precision": False}
RESILIPARSE_OPTIONS = {"main_content": True, "alt_texts": False, "links": False, "list_bullets": True}


def extract_main_text(html: str, backend: str = "trafilatura") -> str:
    if backend == "trafilatura":
        import trafilatura

        return trafilatura.extract(html, **TRAFILATURA_OPTIONS) or ""
    if backend == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text

        return extract_plain_text(html, **RESILIPARSE_OPTIONS) or ""
    raise ValueError(f"extract backend {backend!r}: choose one of {BACKENDS}")


@dataclass
class Extract(Filter):
    """HTML -> main text; pages with no main text are dropped ("extract_empty")."""

    name: ClassVar[str] = "extract"
    backend: str = "trafilatura"
    min_chars: int = 1

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}: choose one of {BACKENDS}")

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not doc.metadata.pop("html", False):
            return True
        try:
            text = extract_main_text(doc.text, self.backend).strip()
        except Exception as e:  # extractors raise on pathological markup; count it, move on
            self.stats.error(doc.metadata.get("source", ""), doc.metadata.get("offset", -1), f"extract failed: {e}")
            return False, "extract_error"
        if len(text) < self.min_chars:
            return False, "extract_empty"
        doc.text = text
        return True


def document_id(doc: Document) -> str:
    key = f"{doc.dump}|{doc.url}|{doc.metadata.get('source', '')}|{doc.metadata.get('offset', '')}"
    return hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()[:20]


@dataclass
class AssignIds(Step):
    """A stable unique id from (dump, url, source file, offset); existing ids are kept unless `overwrite`."""

    name: ClassVar[str] = "ids"
    overwrite: bool = False

    def run(self, docs: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for doc in docs:
            if self.overwrite or not doc.id:
                doc.id = document_id(doc)
            yield doc
