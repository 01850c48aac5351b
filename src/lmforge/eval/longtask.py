"""LongBench-style long-context tasks from a JSONL file: your own long QA sets, by length bucket.

Paper: InternLM2 report (its OpenCompass evaluation of long context, which includes LongBench),
arXiv 2403.17297; docs/papers.md §9; the format and the truncation follow LongBench (Bai et al.
2023, arXiv 2308.14508). One record per line:

    {"id": "q1", "context": "<a long document>", "input": "<the question>", "answers": ["..."],
     "length": 5123, "all_classes": ["sports", "politics"]}

`context`, `input` (may be "") and `answers` (a non-empty list of strings) are required; `id`,
`length` (kept in the output as given) and `all_classes` (required by the `classification`
metric) are optional. A bad record is reported with the file, the line and the field, counted
and skipped; a file with no usable record is an error.

The prompt is a template with {context} and {input}. A prompt longer than the model's budget
(max_length minus the new tokens) loses its middle, as LongBench's `pred.py` does: the first and
the last halves of the budget are kept, so the instruction and the question survive. Scores
(`lmforge.eval.longmetrics`, the best over a record's answers, x 100) are reported overall and by
the length of the full prompt in the model's tokens, in buckets (default 0-4k, 4k-8k, 8k+, as
LongBench-E's; the edges are configurable).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lmforge.eval.jsonl_records import read_records

from lmforge.eval.lm import LanguageModel
from lmforge.eval.longmetrics import METRICS, best_score
from lmforge.eval.metrics import mean
from lmforge.generate import SamplingParams

TEMPLATE = "Read the text below, then answer the question after it.\n\n{context}\n\nQuestion: {input}\nAnswer:"
BUCKETS = (4000, 8000)  # LongBench-E's edges: 0-4k, 4k-8k, 8k+
MAX_NEW_TOKENS = 32
_SLOTS = re.compile(r"\{(context|input)\}")


class LongTaskError(ValueError):
    """A task file or template that cannot be used; the message names the file and the line."""


@dataclass
class LongRecord:
    id: str
    context: str
    input: str
    answers: list[str]
    line: int
    length: int | float | None = None
    all_classes: list[str] | None = None


def _strings(value: object, nonempty: bool) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value) and (bool(value) or not nonempty)


def parse_record(row: object, line: int, metric: str) -> LongRecord:
    """One record; a ValueError names the field that is wrong and what it should be."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for name in ("context", "input"):
        if name not in row:
            raise ValueError(f"missing field {name!r}")
        if not isinstance(row[name], str):
            raise ValueError(f"field {name!r} must be a string, got {type(row[name]).__name__}")
    if "answers" not in row:
        raise ValueError("missing field 'answers' (a list of reference answers)")
    if not _strings(row["answers"], nonempty=True):
        raise ValueError(f"field 'answers' must be a non-empty list of strings, got {json.dumps(row['answers'])[:80]}")
    classes = row.get("all_classes")
    if classes is not None and not _strings(classes, nonempty=True):
        raise ValueError("field 'all_classes' must be a non-empty list of strings or null")
    if metric == "classification" and classes is None:
        raise ValueError("field 'all_classes' is required by the classification metric")
    length = row.get("length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, (int, float))):
        raise ValueError(f"field 'length' must be a number, got {json.dumps(length)[:40]}")
    return LongRecord(id=str(row.get("id", f"line{line}")), context=row["context"], input=row["input"],
                      answers=row["answers"], line=line, length=length, all_classes=classes)


def read_long_tasks(path: str | Path, metric: str = "qa_f1") -> tuple[list[LongRecord], list[str]]:
    """(the usable records, one message per skipped record naming the file, line and field)."""
    path = Path(path)
    if not path.is_file():
        raise LongTaskError(f"{path}: no such task file")
    if metric not in METRICS:
        raise LongTaskError(f"metric {metric!r}: expected one of {sorted(METRICS)}")
    return read_records(path, lambda row, line: parse_record(row, line, metric), LongTaskError)


def check_template(template: str) -> str:
    missing = [s for s in ("{context}", "{input}") if s not in template]
    if missing:
        raise LongTaskError(f"prompt template {template[:60]!r} lacks {' and '.join(missing)}")
    return template


def render_prompt(template: str, record: LongRecord) -> str:
    """The template with {context} and {input} filled in one pass (other braces stay as written)."""
    return _SLOTS.sub(lambda m: getattr(record, m.group(1)), template)


def truncate_middle(ids: Sequence[int], limit: int) -> tuple[list[int], list[int]]:
    """(head, tail) token ids: the whole input as head when it fits `limit`, else its first
    limit // 2 and last limit - limit // 2 tokens (LongBench's middle truncation)."""
    if len(ids) <= limit:
        return list(ids), []
    half = limit // 2
    return list(ids[:half]), list(ids[len(ids) - (limit - half):])


def bucket_label(tokens: int, edges: Sequence[int]) -> str:
    """'0-4k', '4k-8k', '8k+' for edges (4000, 8000)."""
    def k(n: int) -> str:
        return f"{n // 1000}k" if n and n % 1000 == 0 else str(n)

    lower = 0
    for edge in edges:
        if tokens < edge:
            return f"{k(lower)}-{k(edge)}"
        lower = edge
    return f"{k(lower)}+"


def run_long(lm: LanguageModel, tokenizer, path: str | Path, *, metric: str = "qa_f1", template: str = TEMPLATE,
             max_length: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
             buckets: Sequence[int] = BUCKETS, stop: Sequence[str] = ("\n",), limit: int | None = None,
             out_dir: str | Path | None = None) -> dict:
    """Score `lm` on a task file; the result has `json` (its path) when out_dir is set.

    max_length: the longest prompt in tokens with the new tokens (default: the model's
    `max_length`; None there too means no truncation)."""
    check_template(template)
    path = Path(path)
    records, problems = read_long_tasks(path, metric)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    records = records[:limit] if limit else records
    edges = sorted(buckets)
    max_length = max_length or getattr(lm, "max_length", None)
    budget = max_length - max_new_tokens - 1 if max_length else None  # - 1: BOS
    if budget is not None and budget < 2:
        raise LongTaskError(f"max_length {max_length} leaves no room for a prompt beside {max_new_tokens} new tokens")
    prompts, items = [], []
    for rec in records:
        prompt = render_prompt(template, rec)
        ids = tokenizer.encode(prompt)
        head, tail = truncate_middle(ids, budget) if budget else (ids, [])
        if tail:
            prompt = tokenizer.decode(head) + tokenizer.decode(tail)
        prompts.append(prompt)
        items.append({"id": rec.id, "line": rec.line, "length": rec.length, "prompt_tokens": len(ids) + 1,
                      "bucket": bucket_label(len(ids) + 1, edges), "truncated": bool(tail), "answers": rec.answers})
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, stop_strings=tuple(stop))
    completions = lm.generate(prompts, params, truncate=False)
    for rec, it, text in zip(records, items, completions):
        it.update(completion=text, score=100.0 * best_score(metric, text, rec.answers, rec.all_classes))
    labels = [bucket_label(0, edges)] + [bucket_label(e, edges) for e in edges]
    by_bucket = {b: {"n": sum(it["bucket"] == b for it in items),
                     "score": mean([it["score"] for it in items if it["bucket"] == b])} for b in labels}
    result = {"task": path.stem, "file": str(path), "metric": metric, "model": getattr(lm, "name", "model"),
              "template": template, "max_length": max_length, "n": len(items), "skipped": len(problems),
              "problems": problems[:20], "score": mean([it["score"] for it in items]), "by_bucket": by_bucket,
              "items": items}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"long_{path.stem}.json"
        target.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        result["json"] = str(target)
    return result


def results_table(result: dict) -> str:
    """The score by length bucket as a Markdown table."""
    rows = [f"| {b} | {v['n']} | {v['score']:.1f} |" for b, v in result["by_bucket"].items() if v["n"]]
    return "\n".join([f"{result['task']} ({result['metric']}), {result['model']}", "",
                      "| length (tokens) | n | score |", "|---|---:|---:|", *rows,
                      f"| all | {result['n']} | {result['score']:.1f} |"])


def run_long_checkpoint(path: str | Path, checkpoint: str | Path, *, metric: str = "qa_f1",
                        template: str | None = None, max_length: int | None = None,
                        max_new_tokens: int = MAX_NEW_TOKENS, buckets: Sequence[int] | None = None,
                        limit: int | None = None, out: str | Path | None = None,
                        tokenizer: str | Path | None = None, device: str = "auto") -> dict:
    """`lmforge eval long`: a task file on a checkpoint; prints the table, writes long_<task>.json."""
    from lmforge.eval.lm import load_lm

    check_template(template or TEMPLATE)
    read_long_tasks(path, metric)  # a bad file fails before the model loads
    checkpoint = Path(checkpoint)
    lm = load_lm(checkpoint, tokenizer=tokenizer, device=device)
    out = Path(out) if out is not None else checkpoint.resolve().parent / "eval" / checkpoint.name
    result = run_long(lm, lm.tokenizer, path, metric=metric, template=template or TEMPLATE,
                      max_length=max_length or lm.model.cfg.max_seq_len, max_new_tokens=max_new_tokens,
                      buckets=buckets or BUCKETS, limit=limit, out_dir=out)
    print(results_table(result))
    print(f"-> {result['json']}")
    return result
