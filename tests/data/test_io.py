"""Readers and writers: Parquet and JSONL round trips, text folders, zstd; data/ never imports the model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmforge.data.document import Document
from lmforge.data.longctx import long_doc_reason
from lmforge.data.readers import READERS
from lmforge.data.step import TaskStats
from lmforge.data.writers import ShardedWriter


@pytest.mark.parametrize("fmt,reader", [("parquet", "parquet"), ("jsonl.gz", "jsonl"), ("jsonl", "jsonl")])
def test_writer_reader_round_trip(tmp_path, fmt, reader):
    docs = [Document(f"text {i} 中文", id=f"d{i}", url=f"https://x/{i}", dump="CC-MAIN-2023-06",
                     metadata={"language": "zh", "nested": {"a": [1, 2]}}, scores={"toxic_score": 0.25})
            for i in range(5)]
    writer = ShardedWriter(tmp_path, rank=3, format=fmt, max_docs_per_file=2)
    for d in docs:
        writer.write(d)
    files = writer.commit()
    assert [f.name.split(".")[:2] for f in files] == [["00003", "000"], ["00003", "001"], ["00003", "002"]]
    stats = TaskStats("t", 0)
    back = [d for f in files for d in READERS[reader]().read(str(f), stats)]
    for d in back:
        d.metadata.pop("source"), d.metadata.pop("offset")
    assert back == docs and stats.n_errors == 0


def test_zstd_jsonl_and_text_folders(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(3))))
    (tmp_path / "b.txt").write_text("plain text document")
    (tmp_path / "c.txt").write_bytes(b"\xff\xfe broken")
    stats = TaskStats("t", 0)
    assert [d.text for d in READERS["jsonl"]().read(str(tmp_path / "a.jsonl.zst"), stats)] == ["doc 0", "doc 1", "doc 2"]
    assert [d.text for d in READERS["text"]().read(str(tmp_path / "b.txt"), stats)] == ["plain text document"]
    assert list(READERS["text"]().read(str(tmp_path / "c.txt"), stats)) == []
    assert stats.errors == [{"file": str(tmp_path / "c.txt"), "offset": 0, "error": "invalid UTF-8: invalid start byte"}]


def test_long_context_statistics():
    prose = "\n".join(f"Line {i}: the crew sailed on through the long night toward the island." for i in range(50))
    assert long_doc_reason(prose) is None
    assert long_doc_reason("\n".join(["same line, again and again."] * 50)) == "long_repeated_lines"
    assert long_doc_reason("\n".join(str(i) for i in range(1000))) == "long_short_lines"
    assert long_doc_reason("\n".join(f"{i:030d} {i:030d}" for i in range(100))) in ("long_one_character", "long_digits")


def test_data_package_does_not_import_the_model():
    code = ("import sys, lmforge.data.pipeline, lmforge.data.executors, lmforge.data.report; "
            "assert 'lmforge.model' not in sys.modules and 'torch' not in sys.modules, "
            "[m for m in sys.modules if m.startswith(('lmforge.model', 'torch'))][:3]")
    subprocess.run([sys.executable, "-c", code], check=True)
