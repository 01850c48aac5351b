"""The results file of `lmforge eval run`: its format tag, writing it, and reading it back.

    {"format": "lmforge-eval/1", "model": {"name", "fingerprint", "path"}, "created": ISO time,
     "settings": {"limit", "seed", "max_length"},
     "tasks": {name: {"mode", "n", "metrics", "groups"?, "seconds", "cached", "paper"}}}

The harness writes it (`lmforge.eval.harness`), the reports read it (`lmforge.eval.report`).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_FORMAT = "lmforge-eval/1"
RESULTS_FILE = "results.json"


def write_results(results: dict, folder: str | Path) -> Path:
    """Write `results` as <folder>/results.json; returns the path."""
    path = Path(folder) / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_results(path: str | Path) -> dict:
    """A results.json (or the folder holding one), checked to be `lmforge eval run`'s format."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such results file (lmforge eval run writes results.json)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        found = data.get("format") if isinstance(data, dict) else f"(a JSON {type(data).__name__})"
        raise ValueError(f"{path}: format {found!r} is not {RESULTS_FORMAT!r}; "
                         "is this an `lmforge eval run` results.json?")
    data.setdefault("source", str(path))
    return data
