"""`lmforge data ...`: a thin argparse layer over plain functions.

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

    lmforge data demo-crawl OUT [--pages N]          write WARC.gz files with planted cases + truth.jsonl
    lmforge data run RECIPE [--set k=v] [--executor local|ray] [--workers N]
    lmforge data report RUN_DIR [--truth truth.jsonl]
    lmforge data train-classifier --input labelled.jsonl --out model.npz [--backend linear|fasttext]
    lmforge data mimg DOCS.jsonl --out mimg.jsonl [--base-url URL]   multi-hop QA data (lmforge.data.mimg)

`register(subparsers)` adds the `data` command to the main `lmforge` parser; `main()` runs it alone
(`python -m lmforge.data.cli ...`).
"""

from __future__ import annotations

import argparse
import json
import sys

from lmforge.config import positive_int
from lmforge.data.democrawl import DEMO_CRAWL_PAGES


def demo_crawl(out: str, pages: int = DEMO_CRAWL_PAGES, seed: int = 0) -> dict:
    from lmforge.data.democrawl import write_demo_crawl

    counts = write_demo_crawl(out, pages, seed)
    print(f"wrote a demo crawl of {sum(counts.values())} pages to {out}: "
          + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return counts


def run(recipe: str, overrides: list[str] = (), executor: str | None = None, workers: int | None = None) -> dict:
    from lmforge.data.executors import run_pipeline
    from lmforge.data.pipeline import load_pipeline

    return run_pipeline(load_pipeline(recipe, list(overrides)), executor, workers)


def report(run_dir: str, truth: str | None = None) -> dict:
    from lmforge.data.report import report as build

    return build(run_dir, truth)


def train_classifier(input: str, out: str, backend: str = "linear") -> dict:
    from lmforge.data.classifier import read_labelled, train_classifier as train

    result = train(read_labelled(input), out, backend=backend)
    print(json.dumps(result))
    return result


def _done(_result) -> int:
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `data` and its actions to an argparse subparsers object; each sets `fn(args) -> exit code`,
    as the main `lmforge` parser dispatches (RecipeError, FileNotFoundError, ValueError are reported
    there as `lmforge data: error: ...`)."""
    data = subparsers.add_parser("data", help="the web-data pipeline: WARC -> filters -> dedup -> token shards")
    actions = data.add_subparsers(dest="data_action", required=True)

    p = actions.add_parser("demo-crawl", help="write a demo crawl (WARC.gz) with planted cases and truth.jsonl")
    p.add_argument("out")
    p.add_argument("--pages", type=positive_int, default=DEMO_CRAWL_PAGES)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=lambda a: _done(demo_crawl(a.out, a.pages, a.seed)))

    p = actions.add_parser("run", help="run a data recipe (recipes/data-demo.toml)")
    p.add_argument("recipe")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. pipeline.tasks=8")
    p.add_argument("--executor", choices=["local", "ray"])
    p.add_argument("--workers", type=positive_int)
    p.set_defaults(fn=lambda a: _done(run(a.recipe, a.set, a.executor, a.workers)))

    p = actions.add_parser("report", help="funnel, drop reasons and truth scores of a run folder (+ report.png)")
    p.add_argument("run_dir")
    p.add_argument("--truth", help="truth.jsonl (default: the one in the run's input folder)")
    p.set_defaults(fn=lambda a: _done(report(a.run_dir, a.truth)))

    p = actions.add_parser("train-classifier", help="train a scorer on labelled JSONL {\"text\", \"label\": 0/1}")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True, help="model path: .npz (linear) or .ftz/.bin (fasttext)")
    p.add_argument("--backend", choices=["linear", "fasttext"], default="linear")
    p.set_defaults(fn=lambda a: _done(train_classifier(a.input, a.out, a.backend)))

    from lmforge.data.mimg.cli import register as register_mimg

    register_mimg(actions)
    return data


if __name__ == "__main__":  # `python -m lmforge.data.cli ACTION ...` is `lmforge data ACTION ...`
    from lmforge.cli import main

    sys.exit(main(["data", *sys.argv[1:]]))
