"""What a real crawl holds beside pages: non-200 responses (dropped with their status before
extraction) and corrupt gzip members in a WARC.gz (skipped, the reader resynchronises on the next)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from lmforge.config import RecipeError
from lmforge.data.document import Document
from lmforge.data.executors import run_pipeline
from lmforge.data.http_status import HttpStatus
from lmforge.data.pipeline import build_pipeline
from lmforge.data.readers import WarcReader
from lmforge.data.step import TaskStats
from lmforge.data.warc import GzipMembers, iter_warc

ARTICLE = ("<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a></nav><article>"
           "<h1>{title}</h1><p>The ship sailed at dawn and the crew was glad to be at sea again. They had waited "
           "for weeks in the harbour, and the captain knew that the weather would not hold for long.</p>"
           "<p>Every man on board had a task to do, and the work went on from morning to night with little "
           "rest. By the third day the coast had gone from sight, and only the gulls followed them.</p>"
           "</article><footer>Contact us</footer></body></html>")
STATUSES = {200: "OK", 203: "Non-Authoritative Information", 206: "Partial Content", 301: "Moved Permanently",
            404: "Not Found", 500: "Internal Server Error"}


def write_warc(path: Path, statuses: list[int], gz: bool = True) -> None:
    """One response per status, each with an article-like body; with gz, each record its own member."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for i, status in enumerate(statuses):
        body = ARTICLE.format(title=f"Voyage {i} ({status})").encode()
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
        if 300 <= status < 400:
            headers.append(("Location", f"https://example.com/moved/{i}"))
        http = StatusAndHeaders(f"{status} {STATUSES[status]}", headers, protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(f"https://example.com/{i}/{status}", "response",
                                                      payload=io.BytesIO(body), http_headers=http))
    path.write_bytes(buf.getvalue())


def format_stage(input_dir: Path, out: Path, steps: list[dict]) -> list[dict]:
    data = {"pipeline": {"input": str(input_dir), "output": str(out), "input_format": "warc", "tasks": 1},
            "stage": [{"name": "format", "steps": steps}]}
    run_pipeline(build_pipeline(data, "test"), log=lambda *_: None)
    return [json.loads(p.read_text()) for p in sorted((out / "_stats" / "format").glob("*.json"))]


def output_urls(out: Path) -> list[str]:
    return [json.loads(line)["url"] for f in sorted((out / "format").glob("*.jsonl.gz"))
            for line in gzip.open(f, "rt", encoding="utf-8")]


def test_status_codes_are_read_as_warcio_reads_them(tmp_path):
    from warcio.archiveiterator import ArchiveIterator

    path = tmp_path / "a.warc.gz"
    write_warc(path, [200, 404, 301, 206, 500, 203])
    ours = [r.http_status for r in iter_warc(str(path)) if r.type == "response"]
    with open(path, "rb") as f:
        theirs = [int(r.http_headers.get_statuscode()) for r in ArchiveIterator(f) if r.rec_type == "response"]
    assert ours == theirs == [200, 404, 301, 206, 500, 203]
    docs = list(WarcReader().read(str(path), TaskStats("t", 0)))
    assert [d.metadata["http_status"] for d in docs] == ours


def test_only_whole_pages_reach_extraction(tmp_path):
    (tmp_path / "crawl").mkdir()
    write_warc(tmp_path / "crawl" / "a.warc.gz", [200, 404, 301, 206, 500, 203, 404, 200])
    stats = format_stage(tmp_path / "crawl", tmp_path / "out", [{"step": "http_status"}, {"step": "extract"}])
    assert sorted(output_urls(tmp_path / "out")) == ["https://example.com/0/200", "https://example.com/5/203",
                                                      "https://example.com/7/200"]
    assert stats[0]["drops"] == {"http_status": {"http_404": 2, "http_301": 1, "http_206": 1, "http_500": 1}}
    assert "extract" not in stats[0]["drops"]   # every dropped page was dropped before extraction
    kept = [json.loads(line) for f in (tmp_path / "out" / "format").glob("*.gz") for line in gzip.open(f, "rt")]
    assert all("http_status" not in d["metadata"] for d in kept)


def test_status_filter_on_other_inputs_and_its_parameters():
    step = HttpStatus(keep=[200]).bind(TaskStats("t", 0))
    assert step.filter(Document("from a JSONL file")) is True                        # no status: not a response
    assert step.filter(Document("x", metadata={"http_status": 203})) == (False, "http_203")
    assert step.filter(Document("x", metadata={"http_status": None})) == (False, "http_no_status")
    data = {"pipeline": {"input": "in", "output": "out"},
            "stage": [{"name": "format", "steps": [{"step": "http_status", "keep": [200, 2000]}]}]}
    with pytest.raises(RecipeError, match=r"stage\[0\].steps\[0\].keep = \[200, 2000\]: 2000 is not an HTTP status"):
        build_pipeline(data, "recipes/x.toml")


def gz_members(n: int) -> tuple[bytes, list[int]]:
    """A WARC.gz of n 200 responses, each record its own gzip member (as Common Crawl writes them),
    and the byte offset where each member starts."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    members = []
    for i in range(n):
        path = io.BytesIO()
        writer = WARCWriter(path, gzip=True)
        body = ARTICLE.format(title=f"Voyage {i}").encode()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(f"https://example.com/{i}", "response",
                                                      payload=io.BytesIO(body), http_headers=http))
        members.append(path.getvalue())
    starts = [sum(len(m) for m in members[:i]) for i in range(n)]
    return b"".join(members), starts


def damaged(data: bytes, start: int, end: int, where: str) -> bytes:
    """`data` with bytes of the member [start, end) overwritten: in the middle of its deflate stream,
    or in its CRC (the trailer's first 4 bytes)."""
    at = (start + end) // 2 if where == "middle" else end - 8
    return data[:at] + bytes(b ^ 0x5A for b in data[at:at + 4]) + data[at + 4:]


@pytest.mark.parametrize("where", ["middle", "crc"])
def test_a_corrupt_gzip_member_is_skipped_and_the_rest_read(tmp_path, where, caplog):
    data, starts = gz_members(5)
    bad = damaged(data, starts[1], starts[2], where)
    (tmp_path / "crawl").mkdir()
    path = tmp_path / "crawl" / "a.warc.gz"
    path.write_bytes(bad)
    with pytest.raises(Exception):              # gzip.open gives up on the whole rest of the file here
        with gzip.open(path) as f:
            f.read()
    records = list(iter_warc(str(path)))
    urls = [r.headers["warc-target-uri"] for r in records if not isinstance(r, Exception)]
    assert urls == ["https://example.com/0", "https://example.com/2", "https://example.com/3",
                    "https://example.com/4"]
    errors = [r for r in records if isinstance(r, Exception)]
    assert len(errors) == 1 and errors[0].offset == starts[1] and errors[0].skipped == starts[2] - starts[1]
    assert f"corrupt gzip member at byte {starts[1]} of the compressed file" in str(errors[0])
    # offsets of the records after the skip are those of a file without the damaged member
    healthy = [r.offset for r in iter_warc_bytes(tmp_path, data[:starts[1]] + data[starts[2]:])]
    assert [r.offset for r in records if not isinstance(r, Exception)] == healthy

    with caplog.at_level("WARNING", logger="lmforge.data.readers"):
        stats = format_stage(tmp_path / "crawl", tmp_path / "out", [{"step": "http_status"}, {"step": "extract"}])
    assert sorted(output_urls(tmp_path / "out")) == sorted(urls)
    assert stats[0]["extra"] == {"warc_gzip_members_skipped": 1, "warc_gzip_bytes_skipped": starts[2] - starts[1],
                                 "charset_declared": 4}
    assert [(e["file"], e["offset"]) for e in stats[0]["errors"]] == [(str(path), starts[1])]
    assert any(str(path) in r.message and f"byte {starts[1]}" in r.message for r in caplog.records)


def iter_warc_bytes(tmp_path: Path, data: bytes) -> list:
    path = tmp_path / "healthy.warc.gz"
    path.write_bytes(data)
    return list(iter_warc(str(path)))


def test_a_corrupt_last_member_and_garbage_between_members(tmp_path):
    data, starts = gz_members(3)
    path = tmp_path / "last.warc.gz"
    path.write_bytes(damaged(data, starts[2], len(data), "middle"))
    records = list(iter_warc(str(path)))
    assert [type(r).__name__ for r in records] == ["WarcRecord", "WarcRecord", "MemberSkipped"]
    assert "to the end of the file" in str(records[-1]) and records[-1].skipped == len(data) - starts[2]
    garbage = b"\x00garbage\x1f\x8b\x08junk"   # with a false member header in it
    path.write_bytes(data[:starts[1]] + garbage + data[starts[1]:])
    records = list(iter_warc(str(path)))
    assert [r.headers["warc-target-uri"] for r in records if not isinstance(r, Exception)] == \
        [f"https://example.com/{i}" for i in range(3)]
    assert [(r.offset, r.skipped) for r in records if isinstance(r, Exception)] == [(starts[1], len(garbage))]


def test_gzip_members_reads_as_gzip_open_does(tmp_path):
    """Lines, reads and offsets equal gzip.open's, for one-record members and for a whole file gzipped
    as one member larger than `verify_bytes` (handed out as it is decompressed)."""
    data, _ = gz_members(4)
    whole = gzip.compress(gzip.decompress(data) * 3)
    for name, blob in (("members.warc.gz", data), ("whole.warc.gz", whole)):
        path = tmp_path / name
        path.write_bytes(blob)
        for verify_bytes in (100, 1 << 20):
            ours, theirs = GzipMembers(open(path, "rb"), verify_bytes), gzip.open(path, "rb")
            with ours, theirs:
                for i in range(10_000):
                    a = ours.readline(80) if i % 3 else ours.read(37)
                    b = theirs.readline(80) if i % 3 else theirs.read(37)
                    assert a == b and ours.tell() == theirs.tell()
                    if not a:
                        break
