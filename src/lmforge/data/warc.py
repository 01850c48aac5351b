"""A WARC / WARC.gz record reader that reports damage with byte offsets.

Paper: WanJuan-CC, arXiv 2402.19282, stage 1; docs/papers.md §4.

WanJuan-CC starts from Common Crawl WARC files. Real crawl files are sometimes truncated or hold a
record whose header is broken; the pipeline must count each as an error with the file and offset
and carry on with the next record. fastwarc silently returns a short body for a truncated member
and skips unparseable bytes without saying where, and warcio stops at the first bad header, so
this is a small parser of its own (WARC 1.0/1.1: version line, `Name: value` headers, a blank
line, `Content-Length` bytes of block). Offsets are positions in the decompressed stream.
Tests check it reads the same records as warcio on healthy files.

A WARC.gz is read gzip member by gzip member (`GzipMembers`): a member whose deflate stream or CRC
is corrupt is skipped, the reader resynchronises on the next member that decompresses to a WARC
record, and the skip is reported at its byte offset in the compressed file (`MemberSkipped`), the
only offset that locates it. Each response's HTTP status code is parsed for the http_status step.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

DUMP_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
MAX_HEADER_LINES = 256
STATUS_RE = re.compile(rb"HTTP/\d(?:\.\d)?\s+(\d{3})(?:\s|$)")


@dataclass
class WarcRecord:
    offset: int
    headers: dict[str, str]
    block: bytes
    http_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    http_status: int | None = None   # of a response record; None without a readable status line

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "")


class WarcError(ValueError):
    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset = offset


class MemberSkipped(WarcError):
    """A corrupt gzip member, skipped: `offset` is its byte offset in the compressed file (not in the
    decompressed stream, where it has no place), `skipped` the compressed bytes passed over."""

    def __init__(self, offset: int, skipped: int, reason: str, found_next: bool):
        where = "the next gzip member that holds a WARC record" if found_next else "the end of the file"
        super().__init__(offset, f"corrupt gzip member at byte {offset} of the compressed file ({reason}); "
                                 f"skipped {skipped} bytes to {where}")
        self.skipped = skipped


class GzipMembers:
    """A WARC.gz read gzip member by gzip member, with `readline`, `read` and `tell` (decompressed
    offsets) as gzip.open has them.

    Common Crawl writes each record as its own gzip member, so one damaged member need not cost the
    rest of the file. A member is decompressed whole (up to `verify_bytes`) and its CRC checked
    before any of it is handed out; when its deflate stream or its CRC is corrupt, the reader moves
    to the next gzip member header (1f 8b 08) whose data decompresses to a `WARC/1.` line and raises
    `MemberSkipped` once, at the point where the parser asked for the lost bytes. A member larger
    than `verify_bytes` (a whole file gzipped as one member) is handed out as it is decompressed.
    A file that ends inside a member raises EOFError (truncated), as gzip.open does."""

    CHUNK = 1 << 16
    MAGIC = b"\x1f\x8b\x08"

    def __init__(self, raw, verify_bytes: int = 16 << 20):
        self.raw = raw
        self.verify_bytes = verify_bytes
        self.buf = b""          # decompressed and verified; buf[i:] not yet read
        self.i = 0
        self.delivered = 0      # decompressed bytes moved into buf before its start (tell() = this + index)
        self.pending = b""      # compressed bytes read from the file, not yet given to a decompressor
        self.consumed = 0       # compressed offset of pending[0]
        self.dec = None         # the decompressor of the member being read
        self.member_start = 0
        self.held: list[bytes] = []
        self.held_size = 0

    def __enter__(self) -> GzipMembers:
        return self

    def __exit__(self, *exc) -> None:
        self.raw.close()

    def tell(self) -> int:
        return self.delivered

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self.buf.find(b"\n", self.i)
            if end >= 0 and (limit < 0 or end - self.i < limit):
                return self._take(end + 1 - self.i)
            if 0 <= limit <= len(self.buf) - self.i:
                return self._take(limit)
            if not self._fill():
                return self._take(len(self.buf) - self.i)

    def read(self, n: int) -> bytes:
        while len(self.buf) - self.i < n and self._fill():
            pass
        return self._take(min(n, len(self.buf) - self.i))

    def _take(self, n: int) -> bytes:
        out = self.buf[self.i:self.i + n]   # an index, not a slice of the rest: buffers hold megabytes
        self.i += n
        self.delivered += n
        return out

    def _next_chunk(self) -> bytes:
        data = self.pending or self.raw.read(self.CHUNK)
        self.pending = b""
        return data

    def _fill(self) -> bool:
        """Append decompressed, verified bytes to `buf`; False at the end of the file."""
        while True:
            data = self._next_chunk()
            if not data:
                if self.dec is None:
                    return False
                raise EOFError(f"the file ends inside the gzip member at byte {self.member_start} (truncated)")
            if self.dec is None:
                self.dec, self.member_start = zlib.decompressobj(31), self.consumed
            try:
                piece = self.dec.decompress(data)
            except zlib.error as e:
                self._resync(str(e))
            self.held.append(piece)
            self.held_size += len(piece)
            if self.dec.eof:
                self.pending = self.dec.unused_data
                self.consumed += len(data) - len(self.pending)
                self.dec = None
            else:
                self.consumed += len(data)
            if self.dec is None or self.held_size >= self.verify_bytes:
                self.buf, self.i = self.buf[self.i:] + b"".join(self.held), 0
                self.held, self.held_size = [], 0
                return True

    def _resync(self, reason: str) -> None:
        """Drop the damaged member, find the next good one, raise MemberSkipped."""
        start = self.member_start
        self.dec, self.held, self.held_size, self.pending = None, [], 0, b""
        self.buf, self.i = b"", 0  # a member handed out in part (larger than verify_bytes) is abandoned here
        position = start + 1
        while True:
            self.raw.seek(position)
            block = self.raw.read(1 << 20)
            if len(block) < len(self.MAGIC):
                end = self.raw.seek(0, 2)
                self.consumed = end
                raise MemberSkipped(start, end - start, reason, found_next=False)
            i = block.find(self.MAGIC)
            while i >= 0:
                if self._holds_warc_record(position + i):
                    self.raw.seek(position + i)
                    self.consumed = position + i
                    raise MemberSkipped(start, position + i - start, reason, found_next=True)
                i = block.find(self.MAGIC, i + 1)
            position += len(block) - len(self.MAGIC) + 1

    def _holds_warc_record(self, offset: int) -> bool:
        self.raw.seek(offset)
        try:
            head = zlib.decompressobj(31).decompress(self.raw.read(self.CHUNK), 16)
        except zlib.error:
            return False
        return head.startswith(b"WARC/1.")


def _open(path: str, max_record_bytes: int):
    if str(path).endswith(".gz"):
        return GzipMembers(open(path, "rb"), verify_bytes=max_record_bytes + (1 << 20))
    return open(path, "rb")


def _parse_http(block: bytes) -> tuple[dict[str, str], bytes, int | None]:
    """HTTP headers (lower-case names), body and status code of a response block; the status is
    None when the status line is not `HTTP/x.y NNN ...`."""
    head, sep, body = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = block.partition(b"\n\n")
    lines = head.split(b"\n")
    m = STATUS_RE.match(lines[0])
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers, body, int(m.group(1)) if m else None


def iter_warc(path: str, max_record_bytes: int = 10_000_000) -> Iterator[WarcRecord | WarcError]:
    """Records of a WARC file, with a `WarcError` in the stream for each damaged spot."""
    with _open(path, max_record_bytes) as f:
        resync = False
        while True:
            offset = f.tell()
            try:
                line = f.readline(65536)
            except MemberSkipped as e:
                yield e
                resync = False
                continue
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
            except MemberSkipped as e:  # the reader stands at the start of the next good member
                yield e
                resync = False
                continue
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
        record.http_headers, record.body, record.http_status = _parse_http(block)
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
