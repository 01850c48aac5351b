"""Task files: a benchmark of your own as a few lines of TOML, no Python needed.

    name = "capitals"
    mode = "ppl"                      # ppl | gen | code
    data = "capitals.jsonl"           # JSON lines or CSV, relative to this file
    fewshot_data = "capitals_dev.jsonl"
    num_fewshot = 2
    description = "Answer with the capital city.\\n\\n"
    query = "Country: {country}\\nCapital:"
    choices_field = "options"         # ppl: a list field ...
    # choices = ["A", "B", "C", "D"]  # ... or the same labels for every item
    gold = "answer"                   # index, or the text / letter of the right choice

    # gen:  stop = ["\\n"], max_new_tokens = 16, extract = "first_line" | "last_number" | "strip",
    #       match = "exact" | "number" | "contains"
    # code: program = "{prompt}{completion}\\n{test}", timeout = 10

Templates are `str.format` strings over an item's fields. Every problem is reported with the
file and the line: a TOML syntax error, an unknown or missing key, a data record that lacks a
field a template uses.
"""

from __future__ import annotations

import re
import string
import tomllib
from pathlib import Path

from lmforge.eval.data import DataError, read_csv, read_jsonl
from lmforge.eval.metrics import answer_number, same_number
from lmforge.eval.task import Task, render

KEYS = {"name", "mode", "data", "fewshot_data", "num_fewshot", "fewshot", "description", "query", "answer",
        "choices", "choices_field", "gold", "target_delimiter", "fewshot_delimiter", "group", "stop",
        "max_new_tokens", "extract", "match", "program", "timeout", "samples", "temperature", "ks"}
EXTRACTORS = {"strip": str.strip, "first_line": lambda s: (s.strip().splitlines() or [""])[0].strip(),
              "last_number": answer_number}
MATCHERS = {"exact": lambda p, g: p == str(g), "number": same_number,
            "contains": lambda p, g: str(g).strip() in p}


class TaskFileError(ValueError):
    """A task file that cannot be used; the message names the file and the line."""


def _line_of(text: str, key: str) -> int:
    m = re.search(rf"^\s*{re.escape(key)}\s*=", text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def _fields(template: str) -> set[str]:
    return {re.split(r"[.\[]", f)[0] for _, f, _, _ in string.Formatter().parse(template) if f}


def _read_data(path: Path, needed: set[str]) -> list[dict]:
    if path.suffix == ".csv":
        return read_csv(path, sorted(needed))
    return read_jsonl(path, with_lines=True)


def _gold_index(doc: dict, value, choices: list[str], where: str) -> int:
    if isinstance(value, bool):
        raise DataError(f"{where}: gold value {value!r} is neither an index nor a choice")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
    elif isinstance(value, str) and value.strip() in choices:
        index = choices.index(value.strip())
    elif isinstance(value, str) and len(value.strip()) == 1 and value.strip().isalpha():
        index = ord(value.strip().upper()) - ord("A")
    else:
        raise DataError(f"{where}: gold value {value!r} is neither an index nor one of the choices {choices}")
    if not 0 <= index < len(choices):
        raise DataError(f"{where}: gold {value!r} points outside the {len(choices)} choices")
    return index


def load_task(path: str | Path) -> Task:
    """A `Task` from a TOML task file."""
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"{path}: no such task file")
    text = path.read_text(encoding="utf-8")
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TaskFileError(f"{path}: invalid TOML: {e}") from None
    for key in spec:
        if key not in KEYS:
            raise TaskFileError(f"{path}:{_line_of(text, key)}: unknown key {key!r}; known keys: {sorted(KEYS)}")
    for key in ("name", "mode", "data", "query"):
        if key not in spec:
            raise TaskFileError(f"{path}: missing key {key!r}")
    mode = spec["mode"]
    if mode not in ("ppl", "gen", "code"):
        raise TaskFileError(f"{path}:{_line_of(text, 'mode')}: mode = {mode!r}, expected 'ppl', 'gen' or 'code'")
    if mode == "ppl" and ("choices" in spec) == ("choices_field" in spec):
        raise TaskFileError(f"{path}: a 'ppl' task needs exactly one of 'choices' (labels) or 'choices_field'")
    if mode in ("ppl", "gen") and "gold" not in spec:
        raise TaskFileError(f"{path}: a {mode!r} task needs 'gold', the field holding the right answer")
    if mode == "code" and "program" not in spec:
        raise TaskFileError(f"{path}: a 'code' task needs 'program', e.g. \"{{prompt}}{{completion}}\\n{{test}}\"")
    for key, table in (("extract", EXTRACTORS), ("match", MATCHERS)):
        if key in spec and spec[key] not in table:
            raise TaskFileError(f"{path}:{_line_of(text, key)}: {key} = {spec[key]!r}, expected one of {sorted(table)}")

    templates = [spec.get(k, "") for k in ("description", "query", "answer")]
    needed = set().union(*(_fields(t) for t in templates))
    needed |= {spec[k] for k in ("choices_field", "gold", "group") if k in spec}
    if mode == "code":
        needed |= _fields(spec["program"]) - {"completion", "prompt"}

    def load(key: str) -> list[dict]:
        data_path = (path.parent / spec[key]).resolve()
        if not data_path.is_file():
            raise TaskFileError(f"{path}:{_line_of(text, key)}: {key} file {data_path} does not exist")
        rows = _read_data(data_path, needed)
        for row in rows:
            missing = sorted(needed - set(row))
            if missing:
                raise DataError(f"{data_path}:{row.get('_line', '?')}: item lacks field(s) {missing} "
                                f"used by {path.name}")
            if mode == "ppl":
                where = f"{data_path}:{row.get('_line', '?')}"
                row["_choices"] = list(spec["choices"]) if "choices" in spec else row[spec["choices_field"]]
                if not isinstance(row["_choices"], list) or not row["_choices"]:
                    raise DataError(f"{where}: field {spec.get('choices_field')!r} must be a non-empty list")
                row["_gold"] = _gold_index(row, row[spec["gold"]], [str(c) for c in row["_choices"]], where)
        return rows

    docs = load("data")
    fewshot = load("fewshot_data") if "fewshot_data" in spec else None
    kwargs = {k: spec[k] for k in ("description", "answer", "target_delimiter", "fewshot_delimiter",
                                   "max_new_tokens", "timeout", "samples", "temperature") if k in spec}
    if "ks" in spec:
        kwargs["ks"] = tuple(spec["ks"])
    if "stop" in spec:
        kwargs["stop"] = tuple(spec["stop"])
    if fewshot is not None:
        kwargs["fewshot_docs"] = lambda: fewshot
    if mode == "ppl":
        kwargs["choices"] = lambda d: [str(c) for c in d["_choices"]]
        kwargs["gold"] = lambda d: d["_gold"]
    elif "gold" in spec:
        kwargs["gold"] = lambda d: d[spec["gold"]]
    if "group" in spec:
        kwargs["group"] = lambda d: str(d[spec["group"]])
    if mode == "code":
        def program(doc: dict, completion: str) -> str:
            return spec["program"].format(**{**doc, "completion": completion, "prompt": render(spec["query"], doc)})
        kwargs["program"] = program
    try:
        return Task(name=spec["name"], mode=mode, docs=lambda: docs, query=spec["query"],
                    num_fewshot=spec.get("num_fewshot", 0), fewshot=spec.get("fewshot", "first_n"),
                    extract=EXTRACTORS[spec.get("extract", "strip")], match=MATCHERS[spec.get("match", "exact")],
                    **kwargs)
    except (ValueError, TypeError) as e:
        raise TaskFileError(f"{path}: {e}") from None
