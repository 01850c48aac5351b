"""Bad input never crashes a run nor leaves partial output; each damage is an error with file and offset."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from lmforge.data.executors import run_pipeline
from lmforge.data.pipeline import build_pipeline
from lmforge.data.readers import WarcReader
from lmforge.data.step import TaskStats
from lmforge.data.warc import iter_warc

PAGE = ("<html><body><article><p>The ship sailed at dawn and the crew was glad to be at sea again. They had "
        "waited for weeks in the harbour, and the captain knew that the weather would not hold.</p></article>"
        "</body></html>")


def warc_bytes(n: int, gz: bool = True) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for i in range(n):
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(f"https://example{i}.com/", "response",
                                                      payload=io.BytesIO(PAGE.encode()), http_headers=http))
    return buf.getvalue()


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "warc").mkdir()
    good = warc_bytes(5)
    (d / "warc" / "good.warc.gz").write_bytes(good)
    (d / "warc" / "truncated.warc.gz").write_bytes(good[: len(good) - 100])
    plain = warc_bytes(3, gz=False)
    second = plain.find(b"WARC/1", 10)
    broken = plain[:second] + plain[second:].replace(b"WARC-Type: response", b"WARC-Type response", 1)
    (d / "warc" / "broken-header.warc").write_bytes(broken)
    (d / "warc" / "empty.warc.gz").write_bytes(b"")
    (d / "jsonl").mkdir()
    rows = [json.dumps({"text": f"document {i} is fine.", "id": f"d{i}"}).encode() for i in range(3)]
    (d / "jsonl" / "a.jsonl").write_bytes(b"\n".join([rows[0], b'{"text": "bad \xff\xfe bytes"}', rows[1],
                                                      b"{not json", rows[2]]) + b"\n")
    with open(d / "jsonl" / "huge.jsonl", "wb") as f:
        f.write(rows[0] + b"\n")
        f.write(b'{"text": "' + b"x" * (50 * 1024 * 1024) + b'"}\n')   # one 50 MB line
        f.write(rows[1] + b"\n")
    gz = gzip.compress(b"\n".join(rows * 50) + b"\n")
    (d / "jsonl" / "truncated.jsonl.gz").write_bytes(gz[: len(gz) // 2])
    (d / "jsonl" / "empty.jsonl").write_bytes(b"")
    return d


def run(input_dir: Path, out: Path, fmt: str, steps: list[dict]) -> dict:
    data = {"pipeline": {"input": str(input_dir), "output": str(out), "input_format": fmt, "tasks": 2},
            "stage": [{"name": "format", "steps": steps}]}
    run_pipeline(build_pipeline(data, "test"), log=lambda *_: None)
    stats = [json.loads(p.read_text()) for p in sorted((out / "_stats" / "format").glob("*.json"))]
    return {"errors": [e for s in stats for e in s["errors"]], "docs_out": sum(s["docs_out"] for s in stats),
            "n_errors": sum(s["n_errors"] for s in stats)}


def no_partial_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_damaged_warc_files(bad_inputs, tmp_path):
    result = run(bad_inputs / "warc", tmp_path / "out", "warc", [{"step": "extract"}])
    errors = {Path(e["file"]).name: e for e in result["errors"]}
    assert set(errors) == {"truncated.warc.gz", "broken-header.warc", "empty.warc.gz"}, result["errors"]
    assert "truncated" in errors["truncated.warc.gz"]["error"] and errors["truncated.warc.gz"]["offset"] > 0
    assert "broken WARC header" in errors["broken-header.warc"]["error"]
    assert errors["broken-header.warc"]["offset"] == bad_inputs.joinpath("warc", "broken-header.warc").read_bytes().find(b"WARC/1", 10)
    assert errors["empty.warc.gz"] == {"file": str(bad_inputs / "warc" / "empty.warc.gz"), "offset": 0, "error": "empty file"}
    # 5 good + 4 before the truncation + 2 around the broken record
    assert result["docs_out"] == 5 + 4 + 2
    assert no_partial_files(tmp_path / "out")


def test_damaged_jsonl_files(bad_inputs, tmp_path):
    result = run(bad_inputs / "jsonl", tmp_path / "out", "jsonl", [])
    by_file: dict[str, list] = {}
    for e in result["errors"]:
        by_file.setdefault(Path(e["file"]).name, []).append(e)
    assert set(by_file) == {"a.jsonl", "huge.jsonl", "truncated.jsonl.gz", "empty.jsonl"}
    a = (bad_inputs / "jsonl" / "a.jsonl").read_bytes()
    assert [e["offset"] for e in by_file["a.jsonl"]] == [a.find(b"\xff"), a.find(b"{not json")]
    assert "invalid UTF-8" in by_file["a.jsonl"][0]["error"]
    assert by_file["huge.jsonl"][0]["offset"] == a.find(b"\n") + 1 and "max_doc_bytes" in by_file["huge.jsonl"][0]["error"]
    assert "truncated" in by_file["truncated.jsonl.gz"][0]["error"]
    assert result["docs_out"] >= 3 + 2   # a.jsonl and huge.jsonl around their bad lines
    assert no_partial_files(tmp_path / "out")


def test_warc_reader_matches_warcio(demo_crawl):
    from warcio.archiveiterator import ArchiveIterator

    for path in sorted(demo_crawl.glob("*.warc.gz"))[:2]:
        ours = [(r.headers.get("warc-target-uri"), r.body) for r in iter_warc(str(path)) if r.type == "response"]
        with open(path, "rb") as f:
            theirs = [(r.rec_headers.get_header("WARC-Target-URI"), r.content_stream().read())
                      for r in ArchiveIterator(f) if r.rec_type == "response"]
        assert ours == theirs and len(ours) > 10
        stats = TaskStats("t", 0)
        docs = list(WarcReader().read(str(path), stats))
        assert len(docs) == len(ours) and stats.n_errors == 0 and docs[0].dump.startswith("CC-MAIN-")


def test_input_that_matches_nothing_is_refused_before_any_work(tmp_path):
    pattern = str(tmp_path / "crawl" / "*.warc.gz")
    data = {"pipeline": {"input": pattern, "output": str(tmp_path / "out")}, "stage": [{"name": "format"}]}
    with pytest.raises(FileNotFoundError, match=r"pipeline.input = '.*\*\.warc\.gz': no warc files match"):
        run_pipeline(build_pipeline(data, "test"), log=lambda *_: None)
    assert not (tmp_path / "out").exists()


def test_dedup_of_a_corpus_that_earlier_stages_emptied(bad_inputs, tmp_path):
    data = {"pipeline": {"input": str(bad_inputs / "jsonl" / "a.jsonl"), "output": str(tmp_path / "out"),
                         "input_format": "jsonl", "tasks": 2},
            "stage": [{"name": "long", "steps": [{"step": "min_length", "min_bytes": 10**9}]},
                      {"name": "dedup", "steps": [{"step": "minhash_dedup"}]}]}
    summary = run_pipeline(build_pipeline(data, "test"), log=lambda *_: None)
    assert summary["stages"]["dedup"]["ran"] > 0
    stats = [json.loads(p.read_text()) for p in (tmp_path / "out" / "_stats" / "dedup").glob("*.json")]
    assert sum(s["docs_out"] for s in stats) == 0


def test_a_failed_task_is_one_line_and_keeps_its_traceback(bad_inputs, tmp_path):
    from lmforge.data.stage import TaskError

    data = {"pipeline": {"input": str(bad_inputs / "jsonl" / "a.jsonl"), "output": str(tmp_path / "out"),
                         "input_format": "jsonl"}, "stage": [{"name": "format"}]}
    pipeline = build_pipeline(data, "test")
    pipeline.stages[0].run_task = lambda phase, rank: {}["no such key"]
    with pytest.raises(TaskError) as info:
        run_pipeline(pipeline, log=lambda *_: None)
    message = str(info.value)
    assert "\n" not in message and "stage 'format', phase 'map', task 0: KeyError" in message
    log = Path(message.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert log.is_file() and "Traceback" in log.read_text() and "no such key" in log.read_text()
