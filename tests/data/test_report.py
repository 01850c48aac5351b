"""The data funnel: one table for `lmforge data report`, `lmforge run` and the run report page."""

from __future__ import annotations

import argparse
import io

from rich.console import Console

from lmforge.data.cli import register
from lmforge.data.democrawl import DEMO_CRAWL_PAGES
from lmforge.data.report import estimated_tokens, funnel_console_table, funnel_table, tokens_per_char


def row(stage: str, docs_in: int, docs_out: int, tokens: float | None = None, **drops) -> dict:
    return {"stage": stage, "docs_in": docs_in, "docs_out": docs_out, "kept_of_stage": docs_out / docs_in,
            "kept_of_input": docs_out / 100, "tokens_out": tokens, "tokens_exact": False,
            "lang_out": {"en": docs_out - 1, "zh": 1}, "errors": 0, "drops": {"rules": drops}}


def test_funnel_table_rows_and_columns():
    funnel = [row("format", 100, 80, 8000.0, short=15, empty=3, bad=2), row("clean", 80, 40, 4000.0, short=40)]
    header, rows = funnel_table(funnel)
    assert header == ["stage", "docs in", "docs out", "kept", "of input", "tokens out", "en / zh out", "errors",
                      "top drop reasons"]
    assert rows[0] == ["format", "100", "80", "80.0%", "80.0%", "~8,000", "79 / 1", "0",
                       "rules:short 15, rules:empty 3, rules:bad 2"]
    assert funnel_table(funnel, top_reasons=1)[1][0][-1] == "rules:short 15"
    header, rows = funnel_table([row("format", 100, 80, short=20)], top_reasons=None)
    assert "tokens out" not in header and header[-1] == "drop reasons" and len(rows[0]) == len(header)
    out = io.StringIO()
    Console(file=out, width=200).print(funnel_console_table(funnel, "funnel"))
    assert "rules:short 40" in out.getvalue()


def test_token_estimates():
    ratio = tokens_per_char({"en": 50, "zh": 0}, {"en": 200, "zh": 10, "fr": 5})
    assert ratio == {"en": 0.25}
    assert estimated_tokens({"en": 400, "fr": 9}, ratio) == 100  # a language without a ratio is left out
    assert estimated_tokens({"fr": 9}, ratio) is None and estimated_tokens({}, {}) is None
    assert estimated_tokens({"en": 400, "fr": 10}, {**ratio, "*": 0.5}) == 105  # "*": every other language


def test_demo_crawl_pages_default_is_one_constant():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["data", "demo-crawl", "out"]).pages == DEMO_CRAWL_PAGES


def test_a_truth_file_of_another_schema_is_named_and_skipped(tmp_path, capsys):
    from lmforge.cli import main
    from lmforge.data.executors import run_pipeline
    from lmforge.data.pipeline import build_pipeline
    from lmforge.data.report import build_report

    crawl = tmp_path / "in"
    crawl.mkdir()
    for i in range(3):
        (crawl / f"{i}.txt").write_text(f"document {i}")
    (crawl / "truth.jsonl").write_text('{"url": "file:///x", "label": 1}\n')   # another tool's truth file
    data = {"pipeline": {"input": str(crawl), "output": str(tmp_path / "run"), "input_format": "text", "tasks": 1},
            "stage": [{"name": "format", "steps": [{"step": "pii"}]}]}
    run_pipeline(build_pipeline(data, "test"), log=lambda *_: None)
    report = build_report(tmp_path / "run")
    assert "truth" not in report and report["funnel"][0]["docs_out"] == 3
    assert report["truth_skipped"] == (f"{crawl / 'truth.jsonl'}, line 1: missing field 'kind' (a truth file as "
                                       "`lmforge data demo-crawl` writes it has url, kind, expected, group, jaccard "
                                       "on every line); the truth section is skipped")
    assert main(["data", "report", str(tmp_path / "run")]) == 0
    out = capsys.readouterr()
    assert "missing field 'kind'" in out.out and "truth.jsonl" in out.out and "error" not in out.err
    (tmp_path / "other.jsonl").write_text("not json\n")
    assert "other.jsonl, line 1: not JSON" in build_report(tmp_path / "run", tmp_path / "other.jsonl")["truth_skipped"]
