"""A results cache keyed by model, task and item, so an interrupted evaluation resumes.

Layout: `<root>/<model fingerprint[:16]>/<task>.jsonl`, one line per scored item:
`{"key": ..., "record": {...}}`. The key hashes everything that decides the result (the prompt,
the choices, the generation settings), so editing a prompt template re-scores the items it
changes and nothing else. Lines are appended and flushed as items finish; a line cut short by a
kill is skipped when the file is read back (with a warning naming the file and line), and that
item is simply scored again.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path


def item_key(*parts) -> str:
    """A stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResultsCache:
    """Per-item records of one (model, task); `root=None` disables caching."""

    def __init__(self, root: str | Path | None, model_fingerprint: str, task: str):
        self.path = None if root is None else Path(root) / model_fingerprint[:16] / f"{task}.jsonl"
        self.records: dict[str, dict] = {}
        if self.path is not None and self.path.is_file():
            self._read()

    def _read(self) -> None:
        with self.path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    self.records[row["key"]] = row["record"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    warnings.warn(f"{self.path}:{lineno}: unreadable cache line (an interrupted write?); "
                                  "that item will be scored again", stacklevel=3)

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def put_many(self, items: list[tuple[str, dict]]) -> None:
        for key, record in items:
            self.records[key] = record
        if self.path is None or not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            # A kill can cut the last line short; start on a fresh line so only that one is lost.
            if f.tell() > 0:
                with self.path.open("rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        f.write("\n")
            for key, record in items:
                f.write(json.dumps({"key": key, "record": record}, ensure_ascii=False) + "\n")
            f.flush()
