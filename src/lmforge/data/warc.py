"""A WARC / WARC.gz record reader that reports damage with byte offsets.

Paper: WanJuan-CC, arXiv 2402.19282, stage 1; docs/papers.md §4.

WanJuan-CC starts from Common Crawl WARC files. Real crawl files are sometimes truncated or hold a
record whose header is broken; the pipeline must count each as an error with the file and offset
and carry on with the next record. fastwarc silently returns a short body for a truncated member
and skips unparseable bytes without saying where, and warcio stops at the first bad header, so
this is a small parser of its own (WARC 1.0/1.1: version line, `Name: value` headers, a blank
line, `Content-Length` bytes of block). Offsets are positions in the decompressed stream.
Tests check it reads the same records as warcio on healthy files.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

DUMP_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
CHARSET_RE = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.I)
MAX_HEADER_LINES = 256


@dataclass
class WarcRecord:
    offset: int
    headers: dict[str, str]
    block: bytes
    http_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "")


class WarcError(ValueError):
    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset = offset


def _open(path: str):
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def _parse_http(block: bytes) -> tuple[dict[str, str], bytes]:
    head, sep, body = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = block.partition(b"\n\n")
    headers = {}
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers, body


def decode_body(body: bytes, content_type: str = "") -> str:
    """HTML bytes -> str with the declared charset (HTTP header, else <meta>), UTF-8 by default."""
    m = CHARSET_RE.search(content_type.encode("latin-1", "ignore")) or CHARSET_RE.search(body[:2048])
    charset = m.group(1).decode("ascii").lower() if m else "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def iter_warc(path: str, max_record_bytes: int = 10_000_000) -> Iterator[WarcRecord | WarcError]:
    """Records of a WARC file, with a `WarcError` in the stream for each damaged spot."""
    with _open(path) as f:
        resync = False
        while True:
            offset = f.tell()
            try:
                line = f.readline(65536)
            except (EOFError, OSError, zlib.error) as e:
                yield WarcError(offset, f"corrupt or truncated compressed stream: {e}")
                return
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue
            if not line.startswith(b"WARC/"):
                if not resync:
                    yield WarcError(offset, f"expected a WARC version line, found {line[:40]!r}; skipping to the next record")
                    resync = True
                continue
            resync = False
            try:
                record = _read_record(f, offset, max_record_bytes)
            except WarcError as e:
                yield e
                resync = True
                continue
            except (EOFError, OSError, zlib.error) as e:
                yield WarcError(offset, f"corrupt or truncated compressed stream: {e}")
                return
            if record is not None:
                yield record


def _read_record(f, offset: int, max_record_bytes: int) -> WarcRecord | None:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = f.readline(65536)
        if not line:
            raise WarcError(offset, "file ends inside a WARC header")
        if line in (b"\r\n", b"\n"):
            break
        name, colon, value = line.partition(b":")
        if not colon or not name.strip() or b" " in name.strip():
            raise WarcError(offset, f"broken WARC header line {line[:60]!r}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("utf-8", "replace")
    else:
        raise WarcError(offset, f"more than {MAX_HEADER_LINES} WARC header lines")
    try:
        length = int(headers["content-length"])
        if length < 0:
            raise ValueError
    except (KeyError, ValueError):
        raise WarcError(offset, "missing or invalid Content-Length") from None
    if length > max_record_bytes:
        skipped = _skip(f, length)
        if skipped < length:
            raise EOFError(f"record at {offset} truncated after {skipped} of {length} bytes")
        raise WarcError(offset, f"record of {length} bytes exceeds max_record_bytes={max_record_bytes}; skipped")
    block = f.read(length)
    if len(block) < length:
        raise EOFError(f"record truncated: {len(block)} of {length} bytes")
    record = WarcRecord(offset, headers, block)
    if record.type in ("response", "resource") and headers.get("content-type", "").startswith("application/http"):
        record.http_headers, record.body = _parse_http(block)
    else:
        record.body = block
    return record


def _skip(f, n: int) -> int:
    done = 0
    while done < n:
        chunk = f.read(min(1 << 20, n - done))
        if not chunk:
            break
        done += len(chunk)
    return done
