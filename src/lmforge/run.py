"""`lmforge run RECIPE`: the InternLM2 life cycle, stage after stage, into one run folder.

    runs/<name>/crawl/       the demo crawl (WARC.gz + truth.jsonl), unless [data] input is set
    runs/<name>/data/        the WanJuan-CC curation pipeline's stages, stats, drops and funnel.png
    runs/<name>/tokenizer/   tokenizer.json + tokenizer_config.json (InternLM2 chat template)
    runs/<name>/shards/      packed token shards: train/, val/, long/ (+ held-out text per language)
    runs/<name>/pretrain/    train/<stage>/ (metrics.jsonl, checkpoints/, hf/), model/, model-llama/ (no smeared keys)
    runs/<name>/eval/        perplexity.json, benchmarks/results.json, niah/ (heatmaps)
    runs/<name>/sample/      samples.json: completions from the model read back from disk
    runs/<name>/sft/         [sft] enabled: metrics.jsonl, checkpoints/, model/ (the chat model), sft.json
    runs/<name>/rm/          [rm] enabled: member-k/model/ (reward models), soup/, rm.json
    runs/<name>/polar/       [polar] enabled: samples.json (the pool's answers), finetune/model/, polar.json
    runs/<name>/rl/          [rl] enabled: metrics.jsonl, curves.png, model/ (the chat model then), rl.json
    runs/<name>/vl_pretrain/, vl_sft/, vl_mpo/   [vl] enabled: InternVL checkpoints (model/), accuracy JSON
    runs/<name>/report.md, report.html, report.json   everything above on one page

Stages talk only through these files. Each records a key of its settings and inputs
(`lifecycle.stage`): a rerun skips the stages that are done and unchanged, redoes the ones whose
settings or inputs changed, and resumes the one a crash or kill cut short (pre-training from its
last checkpoint). `--from STAGE` redoes a stage and everything after it.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lmforge.atomic import write_json
from lmforge.config import to_dict
from lmforge.lifecycle import corpus
from lmforge.lifecycle.align import polar_stage, rl_stage, rm_stage, sft_stage
from lmforge.lifecycle.evaluation import evaluate_model
from lmforge.lifecycle.mimg import mimg_stage
from lmforge.lifecycle.vl import vl_mpo_stage, vl_pretrain_stage, vl_sft_stage
from lmforge.lifecycle.pretrain import pretrain
from lmforge.lifecycle.samples import sample_completions
from lmforge.lifecycle.check import check_run_recipe
from lmforge.lifecycle.stage import RUN_STAGES, RunStages, data_files_key
from lmforge.machine import resolve_device
from lmforge.recipe import Recipe


def run(recipe: Recipe, recipe_dir: Path | None = None, from_stage: str | None = None,
        console: Console | None = None) -> dict:
    """Run the recipe's stages in order; returns the report's data (also in report.json). The whole
    recipe is checked first (`lifecycle.check`): a bad value is refused before any stage runs."""
    from lmforge.report import write_report

    check_run_recipe(recipe, recipe_dir)
    console = console or Console()
    seed, data, out = recipe.run.seed, recipe.data, Path(recipe.run.out_dir)
    skip = {"crawl"} if data.input or data.corpus else set()
    skip |= {s for s in ("sft", "rm", "polar", "rl", "mimg") if not getattr(recipe, s).enabled}
    skip |= set() if recipe.vl.enabled else {"vl_pretrain", "vl_sft", "vl_mpo"}
    order = [s for s in RUN_STAGES if s not in skip]
    stages = RunStages(out, order, from_stage, log=console.print)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "recipe.json", to_dict(recipe))
    started = time.perf_counter()

    # 1. The raw crawl: the demo crawl, or the user's own files (the files the input matches now, with
    # their sizes and times, are the key: a file added under the same glob redoes the data stage), or
    # an embedded corpus taken as it is (no crawl, no curation).
    if data.input:
        input_dir, input_format, upstream = data.input, data.input_format, []
        input_config = corpus.input_config(data)
    elif not data.corpus:
        crawl = stages.run("crawl", {"pages": data.crawl_pages, "seed": seed}, [],
                           lambda folder: corpus.crawl(data, seed, folder))
        input_dir, input_format, upstream, input_config = str(crawl.folder), "warc", ["crawl"], {}

    # 2. Curation: the data recipe's stages (WanJuan-CC), its text part; shards come from our tokenizer.
    if data.corpus:
        curated = stages.run("data", {"corpus": data.corpus}, [],
                             lambda folder: corpus.embedded_corpus(data.corpus, folder))
    else:
        pipeline_path = corpus.resolve_pipeline(data.pipeline, recipe_dir)
        curated = stages.run("data", {"pipeline": pipeline_path.read_text(), "tasks": data.tasks, **input_config},
                             upstream, lambda folder: corpus.curate(data, pipeline_path, input_dir, input_format,
                                                                    folder, console))
    data_dir = curated.folder

    @functools.cache  # the tokenizer and shards stages both need them: read once per run
    def documents():
        docs = corpus.read_documents(data_dir / curated.summary["curated"])
        if curated.summary.get("val"):  # a fixed held-out split (an embedded corpus)
            return docs, corpus.read_documents(data_dir / curated.summary["val"])
        return corpus.split_documents(docs, data.val_share, seed)

    # 3. Tokenizer: trained on the curated training documents; compression on the held-out ones.
    def tokenizer_stage(folder: Path) -> dict:
        train_docs, val_docs = documents()
        return corpus.train_tokenizer(recipe.tokenizer, [d.text for d in train_docs],
                                      corpus.texts_by_language(val_docs), folder, console)

    tokenizer = stages.run("tokenizer", {"tokenizer": to_dict(recipe.tokenizer), "val_share": data.val_share,
                                         "seed": seed}, ["data"], tokenizer_stage)

    # 4. Shards: train / val, and long/ for a long-context stage that asks for it.
    long_lens = [s.seq_len or recipe.train.seq_len for s in recipe.train.stages if s.shards == "long"]
    short_len = (recipe.train.stages[0].seq_len if recipe.train.stages else None) or recipe.train.seq_len

    def shards_stage(folder: Path) -> dict:
        train_docs, val_docs = documents()
        long_docs = [d for b in curated.summary["branches"] for d in corpus.read_documents(data_dir / b)]
        return corpus.write_shards(tokenizer.folder, train_docs, val_docs, long_docs, data,
                                   max(long_lens) if long_lens else None, seed, folder, console, short_len=short_len)

    shards_key = {"val_share": data.val_share, "passkey_docs": data.passkey_docs, "long_len": long_lens, "seed": seed}
    if data.short_passkey_docs:  # only then, so that the shards of earlier runs stay done
        shards_key |= {"short_passkey_docs": data.short_passkey_docs, "short_len": short_len}
    shards = stages.run("shards", shards_key, ["tokenizer"], shards_stage)

    # 5. Pre-training: every [train] stage; a killed run resumes from its last checkpoint.
    train_config = {"model": to_dict(recipe.model), "train": to_dict(recipe.train), "seed": seed}
    trained = stages.run("pretrain", train_config, ["shards"],
                         lambda folder: pretrain(recipe, tokenizer.folder, shards.folder, folder, console))
    model_dir = trained.folder / "model"

    # 6. Evaluation: perplexity, benchmarks, NIAH.
    device = str(resolve_device(recipe.run.device))
    train_stages = [s.name for s in recipe.train.stages]
    before = ((train_stages[-2], trained.folder / "train" / train_stages[-2] / "hf") if len(train_stages) > 1
              else None)
    stages.run("eval", {"eval": to_dict(recipe.eval), "seed": seed, "long_files": data_files_key(recipe.eval.long_tasks)},
               ["pretrain"],
               lambda folder: evaluate_model(recipe.eval, model_dir, shards.folder, device, seed, folder, console,
                                             before=before))

    # 7. Samples from the model read back from disk.
    def sample_stage(folder: Path) -> dict:
        rows = sample_completions(model_dir, recipe.sample, seed, torch.device(device), console)
        write_json(folder / "samples.json", rows)
        return {"samples": rows}

    stages.run("sample", {"sample": to_dict(recipe.sample), "seed": seed}, ["pretrain"], sample_stage)

    # 8. Alignment: SFT on the recipe's conversations (task accuracy before and after), then the reward
    # model(s) from the SFT model. The chat model to serve is the SFT model.
    chat_model = model_dir
    if recipe.sft.enabled:
        tuned = stages.run("sft", {"sft": to_dict(recipe.sft)}, ["pretrain"],
                           lambda folder: sft_stage(recipe, model_dir, folder, console))
        chat_model = tuned.folder / "model"
    if recipe.rm.enabled:  # (lifecycle.check makes sure sft is enabled too)
        stages.run("rm", {"rm": to_dict(recipe.rm)}, ["sft"], lambda folder: rm_stage(recipe, chat_model, folder, console))
    if recipe.polar.enabled:
        stages.run("polar", {"polar": to_dict(recipe.polar)}, ["sft"],
                   lambda folder: polar_stage(recipe, model_dir, tuned.folder, folder, console))
    if recipe.rl.enabled:  # online RL from the SFT model: the chat model to serve becomes its result
        stages.run("rl", {"rl": to_dict(recipe.rl)}, ["sft"],
                   lambda folder: rl_stage(recipe, tuned.folder / "model", folder, console))
        chat_model = stages.run_dir / "rl" / "model"

    # 9. Long-context instructions: MIMG's agents asking the served SFT model about curated documents.
    if recipe.mimg.enabled:
        def mimg_run(folder: Path) -> dict:
            return mimg_stage(recipe.mimg, tuned.folder / "model", documents()[0], device, folder, console)

        stages.run("mimg", {"mimg": to_dict(recipe.mimg)}, ["sft"], mimg_run)

    # 10. Vision-language: a ViT and projector joined to the pre-trained language model, native
    # multimodal pre-training, SFT and MPO on the generated image questions (InternVL3).
    if recipe.vl.enabled:
        vl_config = {"vl": to_dict(recipe.vl), "seed": seed, "data_files": data_files_key(recipe.vl.data)}
        vl_pre = stages.run("vl_pretrain", vl_config, ["pretrain"],
                            lambda folder: vl_pretrain_stage(recipe, model_dir, shards.folder, folder, console))
        vl_sft = stages.run("vl_sft", vl_config, ["vl_pretrain"],
                            lambda folder: vl_sft_stage(recipe, vl_pre.folder / "model", folder, console))
        vl_mpo = stages.run("vl_mpo", vl_config, ["vl_sft"],
                            lambda folder: vl_mpo_stage(recipe, vl_sft.folder / "model", folder, console))
        chat_model = vl_mpo.folder / "model"

    # 11. The report: report.md, report.html (static, plots inline) and report.json.
    outcomes = stages.outcomes
    stages.run("report", {"always": time.time()}, [s for s in order if s in outcomes],
               lambda folder: write_report(out, folder, recipe, outcomes, console))
    print_timings(stages, time.perf_counter() - started, console)
    console.print(f"talk to the model: lmforge serve {chat_model}   (then open http://127.0.0.1:8000/)")
    return json.loads((out / "report.json").read_text())


def print_timings(stages: RunStages, total: float, console: Console) -> None:
    table = Table(title=f"run: {stages.run_dir} ({total:.0f}s)")
    for col in ("stage", "status", "seconds", "folder"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for o in stages.outcomes.values():
        table.add_row(o.name, o.status, f"{o.seconds:.1f}", str(o.folder))
    console.print(table)
    console.print(f"report: {stages.run_dir / 'report.html'} and {stages.run_dir / 'report.md'}")

