"""Writers: JSONL(.gz) and Parquet, sharded, atomic (every stage its own output).

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

A task writes `<rank>.<part>.<ext>` files under its stage folder, each first as a hidden temporary
file (`lmforge.atomic`); all are renamed into place only when the task finishes, just before its
completion marker. A killed task therefore leaves no partial output, only temporaries that the next
run removes. `open_atomic` and `write_file` do the same for one file (stats, markers, dedup's work files).
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from lmforge.atomic import atomic_path
from lmforge.data.document import Document

EXTENSIONS = {"jsonl.gz": ".jsonl.gz", "jsonl": ".jsonl", "parquet": ".parquet"}


@dataclass
class ShardedWriter:
    """Writes documents of one task into size-bounded shards; `commit()` publishes them. As a context
    manager it commits when the block ends, and removes the temporaries when the block raises."""

    directory: Path
    rank: int
    format: str = "jsonl.gz"
    max_docs_per_file: int = 100_000
    compresslevel: int = 3
    _files: list = field(default_factory=list)      # (tmp, final)
    _pending: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # one atomic_path per shard
    _handle: object = None
    _rows: list = field(default_factory=list)
    _count: int = 0

    def __post_init__(self) -> None:
        if self.format not in EXTENSIONS:
            raise ValueError(f"output format {self.format!r}: choose one of {sorted(EXTENSIONS)}")
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _open_next(self) -> None:
        self._close_current()
        final = self.directory / f"{self.rank:05d}.{len(self._files):03d}{EXTENSIONS[self.format]}"
        tmp = Path(self._pending.enter_context(atomic_path(final)))
        self._files.append((tmp, final))
        self._count = 0
        if self.format == "jsonl.gz":
            self._handle = gzip.open(tmp, "wt", encoding="utf-8", compresslevel=self.compresslevel)
        elif self.format == "jsonl":
            self._handle = open(tmp, "w", encoding="utf-8")
        else:
            self._rows = []

    def write(self, doc: Document) -> None:
        if not self._files or self._count >= self.max_docs_per_file:
            self._open_next()
        self._count += 1
        if self.format == "parquet":
            self._rows.append(_parquet_row(doc))
        else:
            self._handle.write(json.dumps(doc.to_dict(), ensure_ascii=False) + "\n")

    def _close_current(self) -> None:
        if self.format == "parquet" and self._files:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(self._rows, schema=PARQUET_SCHEMA()), self._files[-1][0])
            self._rows = []
        elif self._handle is not None:
            self._handle.close()
            self._handle = None

    def commit(self) -> list[Path]:
        """Close and rename every shard into place (an empty task still writes one empty shard)."""
        if not self._files:
            self._open_next()
        self._close_current()
        self._pending.close()
        return [final for _, final in self._files]

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.commit()
        else:
            self._close_current()
            self._pending.__exit__(*exc)  # each atomic_path removes its temporary


@contextlib.contextmanager
def open_atomic(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for binary writing (its folder created) and renamed into place, whole, when the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def write_file(path: Path, data: bytes) -> None:
    """`data` to `path` (its folder created), whole, by rename."""
    with open_atomic(path) as f:
        f.write(data)


def PARQUET_SCHEMA():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("url", pa.string()), ("dump", pa.string()), ("text", pa.string()),
                      ("metadata", pa.string()), ("scores", pa.map_(pa.string(), pa.float64()))])


def _parquet_row(doc: Document) -> dict:
    # metadata is free-form (nested, mixed types): stored as a JSON string, read back by from_dict
    return {"id": doc.id, "url": doc.url, "dump": doc.dump, "text": doc.text,
            "metadata": json.dumps(doc.metadata, ensure_ascii=False), "scores": list(doc.scores.items())}
