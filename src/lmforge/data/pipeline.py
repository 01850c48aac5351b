"""A pipeline recipe: TOML -> stages of steps, checked strictly.

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

    [pipeline]
    input = "runs/data-demo/crawl"     # a folder or glob of raw files
    input_format = "warc"              # warc | jsonl | parquet | text
    output = "runs/data-demo/data"
    tasks = 4                          # input slices (tasks) per stage
    executor = "local"                 # local | ray
    workers = 2                        # local processes (1: in this process)

    [[stage]]
    name = "format"
    steps = [{ step = "extract", backend = "trafilatura" }, { step = "langid" }, { step = "ids" }]

Each stage reads the previous stage's folder (or `input = "<stage name>"` for a branch) and writes
its own. A map stage runs its steps document by document; a step that needs the whole corpus
(`whole_corpus`, as `minhash_dedup`) is the only step of its stage and builds that stage. Unknown
step names and unknown parameters are errors naming the file and the key, with the closest known
name. Model-dependent steps live outside `data/` (data/ never imports lmforge.model, so the
pipeline needs no torch model to run) and are named here by import path, loaded only when a
recipe uses them.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.config import RecipeError, from_dict, read_toml
from lmforge.data.dedup.stage import MinHashDedup
from lmforge.data.extract import AssignIds, Extract
from lmforge.data.http_status import HttpStatus
from lmforge.data.langid import LanguageId
from lmforge.data.longctx import LongContextStatistics, MinLength
from lmforge.data.pii import MaskPII
from lmforge.data.quality import Advertisement, Fluency
from lmforge.data.readers import FORMATS
from lmforge.data.rules.c4 import C4Rules
from lmforge.data.rules.chinese import ChineseQuality, ChineseRepetition
from lmforge.data.rules.encoding import EncodingRule
from lmforge.data.rules.fineweb import FineWebRules
from lmforge.data.rules.gopher import GopherQuality, GopherRepetition
from lmforge.data.safety import Pornography, Toxicity, WordBlocklist
from lmforge.data.stage import MapStage, Stage
from lmforge.data.step import Step
from lmforge.data.tokenize import Tokenize
from lmforge.data.url_filter import UrlFilter

STEPS = {cls.name: cls for cls in (
    HttpStatus, Extract, LanguageId, AssignIds, EncodingRule, GopherQuality, GopherRepetition, C4Rules, FineWebRules,
    ChineseQuality, ChineseRepetition, UrlFilter, WordBlocklist, Toxicity, Pornography, Advertisement,
    Fluency, Tokenize, MinLength, LongContextStatistics, MinHashDedup, MaskPII)}
STEPS["domain_blocklist"] = UrlFilter  # the step's earlier name: recipes written for it keep working
# Steps that load an lmforge model: imported on use only (lmforge.scorers may import lmforge.model).
LAZY_STEPS = {"perplexity": "lmforge.scorers.perplexity:PerplexityFilter",
              "perplexity_gain": "lmforge.scorers.perplexity:PerplexityGainFilter"}
EXECUTORS = ("local", "ray")


@dataclass
class PipelineSection:
    input: str
    output: str
    input_format: str = "warc"
    input_pattern: str = ""
    name: str = "data"
    tasks: int = 2
    workers: int = 1
    executor: str = "local"
    output_format: str = "jsonl.gz"
    max_doc_bytes: int = 10_000_000


@dataclass
class Pipeline:
    section: PipelineSection
    stages: list[Stage] = field(default_factory=list)
    source: str = ""
    branches: list[str] = field(default_factory=list)  # stages reading an earlier stage than the previous one

    @property
    def output(self) -> Path:
        return Path(self.section.output)


def step_class(name: str, where: str, key: str) -> type:
    if name in STEPS:
        return STEPS[name]
    if name in LAZY_STEPS:
        module, _, attr = LAZY_STEPS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    known = sorted(STEPS) + sorted(LAZY_STEPS)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known steps: {', '.join(known)}"
    raise RecipeError(f"{where}: {key}: unknown step {name!r}{hint}")


def stage_of(steps: list[Step], stage_args: dict, where: str) -> Stage:
    """The stage that runs `steps`: a whole-corpus step's own stage, else a map stage."""
    whole = [s for s in steps if s.whole_corpus]
    if whole:
        if len(steps) != 1:
            raise RecipeError(f"{where}: {whole[0].name} needs the whole corpus and must be the only step of its stage")
        return whole[0].corpus_stage(**stage_args)
    sinks = [s for s in steps[:-1] if s.sink]
    if sinks:
        raise RecipeError(f"{where}: a {sinks[0].name!r} step writes shards and must come last")
    return MapStage(**stage_args, steps=steps)


def build_pipeline(data: dict, where: str) -> Pipeline:
    """Check a parsed recipe and build its stages."""
    unknown = sorted(set(data) - {"pipeline", "stage"})
    if unknown:
        raise RecipeError(f"{where}: unknown table {unknown[0]!r}; a data recipe has [pipeline] and [[stage]]")
    if "pipeline" not in data:
        raise RecipeError(f"{where}: missing the [pipeline] table (input, output, ...)")
    section = from_dict(PipelineSection, data["pipeline"], where, "pipeline.")
    if section.input_format not in FORMATS:
        raise RecipeError(f"{where}: pipeline.input_format = {section.input_format!r}: choose one of {FORMATS}")
    if section.executor not in EXECUTORS:
        raise RecipeError(f"{where}: pipeline.executor = {section.executor!r}: choose one of {EXECUTORS}")
    if section.tasks < 1 or section.workers < 1:
        raise RecipeError(f"{where}: pipeline.tasks and pipeline.workers must be >= 1")
    stages: list[Stage] = []
    branches: list[str] = []
    out = Path(section.output)
    for i, raw in enumerate(data.get("stage", [])):
        prefix = f"stage[{i}]"
        if not isinstance(raw, dict):
            raise RecipeError(f"{where}: {prefix} must be a table")
        bad = sorted(set(raw) - {"name", "steps", "input", "tasks", "output_format"})
        if bad:
            close = difflib.get_close_matches(bad[0], ["name", "steps", "input", "tasks", "output_format"], n=1)
            hint = f"; did you mean '{prefix}.{close[0]}'?" if close else ""
            raise RecipeError(f"{where}: unknown key '{prefix}.{bad[0]}'{hint}")
        name = raw.get("name")
        if not isinstance(name, str) or not name or name.startswith("_") or "/" in name:
            raise RecipeError(f"{where}: {prefix}.name must be a folder name such as \"clean\", got {name!r}")
        if any(s.name == name for s in stages):
            raise RecipeError(f"{where}: {prefix}.name {name!r} is used by two stages")
        source = raw.get("input")
        if source is None:
            input_dir, fmt = (str(stages[-1].output_dir), stages[-1].output_format) if stages else \
                (section.input, section.input_format)
        else:
            match = [s for s in stages if s.name == source]
            if not match:
                raise RecipeError(f"{where}: {prefix}.input = {source!r}: no earlier stage has that name")
            input_dir, fmt = str(match[0].output_dir), match[0].output_format
            if match[0] is not stages[-1]:
                branches.append(name)
        fmt = {"jsonl.gz": "jsonl"}.get(fmt, fmt)
        common = dict(name=name, out=out, input_dir=input_dir, input_format=fmt, tasks=int(raw.get("tasks", section.tasks)),
                      output_format=raw.get("output_format", section.output_format),
                      max_doc_bytes=section.max_doc_bytes,
                      input_pattern=section.input_pattern if not stages and source is None else "")
        steps = []
        for j, spec in enumerate(raw.get("steps", [])):
            key = f"{prefix}.steps[{j}]"
            if not isinstance(spec, dict) or "step" not in spec:
                raise RecipeError(f"{where}: {key} must be a table with a 'step' name, e.g. {{ step = \"langid\" }}")
            params = {k: v for k, v in spec.items() if k != "step"}
            steps.append(from_dict(step_class(spec["step"], where, key), params, where, key + "."))
        stages.append(stage_of(steps, common, f"{where}: {prefix}"))
    if not stages:
        raise RecipeError(f"{where}: no [[stage]] tables; see recipes/data-demo.toml")
    return Pipeline(section, stages, where, branches)


def load_pipeline(path: str | Path, overrides: list[str] = ()) -> Pipeline:
    """Read a data recipe; `overrides` are `pipeline.key=value` strings as for `lmforge run --set`."""
    data, where = read_toml(path, overrides, example="recipes/data-demo.toml")
    return build_pipeline(data, where)
