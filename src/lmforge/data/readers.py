"""Readers: WARC(.gz), JSONL (plain, .gz, .zst), Parquet and folders of text files.

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

A reader turns one input file into documents and reports every damaged spot to the task's stats
as an error with the file and byte offset (a truncated .gz, a broken WARC header, invalid UTF-8,
an over-long line, an empty file), then carries on: bad input never stops a run. A corrupt gzip
member of a WARC.gz is also a warning line (the file and the member's compressed offset) and
counts in the stats' counters (`warc_gzip_members_skipped`, `warc_gzip_bytes_skipped`). Files
are split between tasks round-robin over the sorted list, so any executor gives a task the same
files.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lmforge.data.charset import decode_html
from lmforge.data.document import Document
from lmforge.data.step import TaskStats
from lmforge.data.warc import DUMP_RE, MemberSkipped, WarcError, iter_warc

log = logging.getLogger(__name__)

FORMATS = ("warc", "jsonl", "parquet", "text")
SUFFIXES = {"warc": (".warc", ".warc.gz"), "jsonl": (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz"),
            "parquet": (".parquet",), "text": (".txt",)}


def list_inputs(path: str | Path, fmt: str, pattern: str = "") -> list[str]:
    """Input files of format `fmt` under a folder (recursively) or matching a glob, sorted."""
    path = str(path)
    if pattern:
        files = glob.glob(os.path.join(path, pattern), recursive=True)
    elif os.path.isdir(path):
        files = [str(p) for p in Path(path).rglob("*") if p.is_file() and str(p).endswith(SUFFIXES[fmt])]
    else:
        files = glob.glob(path)
    return sorted(f for f in files if not os.path.basename(f).startswith("."))


def require_inputs(path: str | Path, fmt: str, pattern: str = "", key: str = "pipeline.input") -> list[str]:
    """`list_inputs`, refusing an input that matches nothing (FileNotFoundError naming `key` and the pattern)."""
    files = list_inputs(path, fmt, pattern)
    if not files:
        where = f"{str(path)!r}" + (f" with input_pattern {pattern!r}" if pattern else "")
        raise FileNotFoundError(f"{key} = {where}: no {fmt} files match (a folder is searched for "
                                f"{', '.join(SUFFIXES[fmt])}; a glob is matched as written)")
    return files


def input_fingerprint(files: list[str]) -> list[tuple[str, int, int]]:
    """Path, size and modification time of each input file: a stage keyed on it is redone when a file
    is added, removed or edited."""
    return [(f, st.st_size, st.st_mtime_ns) for f in files for st in [os.stat(f)]]


def _binary(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


@dataclass
class Reader:
    """Reads one input format; `max_doc_bytes` bounds a single document or record."""

    format: ClassVar[str] = ""
    max_doc_bytes: int = 10_000_000

    def read(self, path: str, stats: TaskStats) -> Iterator[Document]:
        if os.path.getsize(path) == 0:
            stats.error(path, 0, "empty file")
            return
        yield from self._read(path, stats)

    def _read(self, path: str, stats: TaskStats) -> Iterator[Document]:
        raise NotImplementedError


@dataclass
class WarcReader(Reader):
    """HTML responses of a WARC file; the text is the decoded HTML until the extract step, and
    `metadata["http_status"]` the response's status code until the http_status step. How each
    page's charset was decided is counted (`charset_declared`, `_detected`, `_repaired`,
    `_replaced`; charset.py)."""

    format: ClassVar[str] = "warc"

    def _read(self, path: str, stats: TaskStats) -> Iterator[Document]:
        m = DUMP_RE.search(path)
        dump = m.group(0) if m else ""
        for rec in iter_warc(path, self.max_doc_bytes):
            if isinstance(rec, MemberSkipped):
                log.warning("%s: %s", path, rec)
                stats.extra["warc_gzip_members_skipped"] += 1
                stats.extra["warc_gzip_bytes_skipped"] += rec.skipped
            if isinstance(rec, WarcError):
                stats.error(path, rec.offset, str(rec))
                continue
            if rec.type == "warcinfo":
                m = DUMP_RE.search(rec.body.decode("utf-8", "replace"))
                dump = m.group(0) if m else dump
                continue
            if rec.type != "response":
                continue
            content_type = rec.http_headers.get("content-type", "")
            if content_type and "html" not in content_type:
                continue
            decoded = decode_html(rec.body, content_type)
            stats.extra[f"charset_{decoded.how}"] += 1
            yield Document(text=decoded.text, url=rec.headers.get("warc-target-uri", ""),
                           dump=dump, metadata={"source": path, "offset": rec.offset,
                                                "date": rec.headers.get("warc-date", ""), "html": True,
                                                "http_status": rec.http_status})


@dataclass
class JsonlReader(Reader):
    format: ClassVar[str] = "jsonl"

    def _read(self, path: str, stats: TaskStats) -> Iterator[Document]:
        offset = 0
        try:
            with _binary(path) as f:
                while True:
                    line = f.readline(self.max_doc_bytes + 1)
                    if not line:
                        return
                    start, offset = offset, offset + len(line)
                    if len(line) > self.max_doc_bytes and not line.endswith(b"\n"):
                        offset += _skip_line(f)
                        stats.error(path, start, f"line longer than max_doc_bytes={self.max_doc_bytes}; skipped")
                        continue
                    if not line.strip():
                        continue
                    try:
                        doc = Document.from_dict(json.loads(line.decode("utf-8")))
                    except UnicodeDecodeError as e:
                        stats.error(path, start + e.start, f"invalid UTF-8: {e.reason}")
                        continue
                    except (ValueError, AttributeError) as e:
                        stats.error(path, start, f"not a JSON document: {e}")
                        continue
                    doc.metadata.setdefault("source", path)
                    doc.metadata.setdefault("offset", start)
                    yield doc
        except (EOFError, OSError, zlib.error) as e:
            stats.error(path, offset, f"corrupt or truncated compressed stream: {e}")
        except Exception as e:  # zstandard raises its own ZstdError
            if type(e).__name__ != "ZstdError":
                raise
            stats.error(path, offset, f"corrupt zstd stream: {e}")


def _skip_line(f) -> int:
    n = 0
    while True:
        chunk = f.readline(1 << 20)
        n += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return n


@dataclass
class ParquetReader(Reader):
    format: ClassVar[str] = "parquet"

    def _read(self, path: str, stats: TaskStats) -> Iterator[Document]:
        import pyarrow.parquet as pq

        row = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    try:
                        doc = Document.from_dict(record)
                    except ValueError as e:
                        stats.error(path, row, f"row {row}: {e}")
                    else:
                        doc.metadata.setdefault("source", path)
                        doc.metadata.setdefault("offset", row)
                        yield doc
                    row += 1
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for damaged files
            stats.error(path, row, f"unreadable Parquet (row {row}): {e}")


@dataclass
class TextReader(Reader):
    """One document per .txt file; its id is the path relative to nothing (the file name)."""

    format: ClassVar[str] = "text"

    def _read(self, path: str, stats: TaskStats) -> Iterator[Document]:
        size = os.path.getsize(path)
        if size > self.max_doc_bytes:
            stats.error(path, 0, f"file of {size} bytes exceeds max_doc_bytes={self.max_doc_bytes}; skipped")
            return
        data = Path(path).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            stats.error(path, e.start, f"invalid UTF-8: {e.reason}")
            return
        yield Document(text=text, url=f"file://{os.path.abspath(path)}", metadata={"source": path, "offset": 0})


READERS = {r.format: r for r in (WarcReader, JsonlReader, ParquetReader, TextReader)}
