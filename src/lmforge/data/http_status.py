"""Drop WARC responses that are not a whole page: the HTTP status filter, first step of the format stage.

Paper: WanJuan-CC, arXiv 2402.19282, stage 1 ("format"); docs/papers.md §4.

A crawl holds error pages (404, 500), redirects and partial responses beside the pages themselves;
their bodies are "Not Found" templates, "Moved Permanently" stubs or a slice of a page, and none is
text to train on. The WARC reader puts each response's status code in `metadata["http_status"]`
(None when the record holds no HTTP status line: a dns: record, a broken block); this step drops
every status outside `keep`, with the status as the reason (`http_404`, `http_301`,
`http_no_status`), so the report counts drops per status. Documents that did not come from a WARC
response (JSONL, Parquet, text) have no status and pass. What is kept by default, and why:

    200  OK: the page.
    203  Non-Authoritative Information: a proxy's transformed copy of a 200 page; still the content.
    206  Partial Content: dropped, a byte range of a page, not the page (Common Crawl truncates
         large pages itself and marks them with WARC-Truncated, a 200 all the same).
    3xx  dropped: a redirect's body is a stub; the page it points to is its own record when crawled.
    204, 1xx, 4xx, 5xx and other 2xx (201, 202): dropped, no page content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Filter


@dataclass
class HttpStatus(Filter):
    """Keep WARC responses whose HTTP status is in `keep`; drop the others with reason `http_<status>`."""

    name: ClassVar[str] = "http_status"
    keep: list[int] = field(default_factory=lambda: [200, 203])

    def __post_init__(self) -> None:
        bad = [s for s in self.keep if not isinstance(s, int) or not 100 <= s <= 599]
        if bad:
            raise ValueError(f"keep = {self.keep!r}: {bad[0]!r} is not an HTTP status code (100-599)")

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if "http_status" not in doc.metadata:
            return True
        status = doc.metadata.pop("http_status")   # read once, here; later stages need not carry it
        if status is None:
            return False, "http_no_status"
        return True if status in self.keep else (False, f"http_{status}")
