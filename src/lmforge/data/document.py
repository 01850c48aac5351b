"""The unit that flows through the data pipeline.

Paper: WanJuan-CC, arXiv 2402.19282 (its JSONL records); docs/papers.md §4.

A document carries its text, where it came from (URL, crawl dump id), free metadata (language,
WARC date, source file and offset) and the scores the safety and quality stages write, named as
WanJuan-CC publishes them: `toxic_score`, `porn_score`, `not_ad_score`, `fluency_score`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    text: str
    id: str = ""
    url: str = ""
    dump: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def language(self) -> str:
        return self.metadata.get("language", "unknown")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "dump": self.dump, "text": self.text,
                "metadata": self.metadata, "scores": self.scores}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Document:
        """Build from a JSONL/Parquet row; unknown top-level fields land in metadata."""
        known = {"id", "url", "dump", "text", "metadata", "scores"}
        text = row.get("text", row.get("content"))
        if not isinstance(text, str):
            raise ValueError("the row has no string 'text' (or 'content') field")
        metadata = row.get("metadata") or {}
        metadata = dict(json.loads(metadata) if isinstance(metadata, str) else metadata)  # Parquet stores JSON
        metadata.update({k: v for k, v in row.items() if k not in known and k != "content"})
        return cls(text=text, id=str(row.get("id") or ""), url=str(row.get("url") or ""),
                   dump=str(row.get("dump") or ""), metadata=metadata,
                   scores=dict(row.get("scores") or {}))  # a dict, or Parquet's list of pairs
