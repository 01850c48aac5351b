"""Reading a user's JSONL task file record by record: a bad line (not UTF-8, not JSON, a field its
parser refuses) is skipped with a message naming the file, the line and what to fix, and a file with
no usable record is refused. Used by the long-context (`longtask`) and image (`vl_tasks`) task files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def read_records(path: Path, parse: Callable[[dict, int], T], error: type[Exception]) -> tuple[list[T], list[str]]:
    """(parse(row, line) of every good line, one message per skipped line); `error` when none is good."""
    records, problems = [], []
    with path.open("rb") as f:
        for line, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(f"{path}:{line}: not UTF-8 text (byte {e.start}); save the file as UTF-8 JSONL")
                continue
            if not text.strip():
                continue
            try:
                records.append(parse(json.loads(text), line))
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{line}: invalid JSON ({e.msg} at column {e.colno})")
            except ValueError as e:
                problems.append(f"{path}:{line}: {e}")
    if not records:
        shown = "; ".join(problems[:3]) or "the file is empty"
        shown += f"; ... and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise error(f"{path}: no usable record ({len(problems)} bad): {shown}")
    return records, problems
