"""Shared fixtures for the data pipeline tests: one demo crawl and one full run, made once per session."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from lmforge import corpora
from lmforge.data.democrawl import write_demo_crawl
from lmforge.data.executors import run_pipeline
from lmforge.data.pipeline import build_pipeline
from lmforge.tokenizer import train_bpe

ROOT = Path(__file__).resolve().parents[2]
DEMO_RECIPE = ROOT / "recipes" / "data-demo.toml"
DEMO_PAGES = 300


def demo_recipe(input_dir: Path, output: Path, tokenizer: Path | None = None, stages: list[str] | None = None,
                **pipeline) -> dict:
    """recipes/data-demo.toml as a dict, pointed at test folders (optionally a subset of stages)."""
    data = tomllib.loads(DEMO_RECIPE.read_text())
    data["pipeline"].update(input=str(input_dir), output=str(output), **pipeline)
    if stages is not None:
        data["stage"] = [s for s in data["stage"] if s["name"] in stages]
    for stage in data["stage"]:
        for step in stage["steps"]:
            if step["step"] == "tokenize" and tokenizer is not None:
                step["tokenizer"] = str(tokenizer)
    return copy.deepcopy(data)


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory) -> Path:
    tok = train_bpe([corpora.english_text(60_000) + "\n" + corpora.chinese_news_text(40_000)], vocab_size=600)
    return tok.save(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def demo_crawl(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crawl")
    write_demo_crawl(out, DEMO_PAGES, seed=0)
    return out


@pytest.fixture(scope="session")
def demo_run(demo_crawl, small_tokenizer, tmp_path_factory) -> Path:
    """The whole demo recipe on the demo crawl, with the local executor and 2 workers."""
    out = tmp_path_factory.mktemp("run") / "data"
    data = demo_recipe(demo_crawl, out, small_tokenizer, workers=2)
    run_pipeline(build_pipeline(data, str(DEMO_RECIPE)), log=lambda *_: None)
    return out
