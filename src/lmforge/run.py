"""`lmforge run RECIPE`: the InternLM2 life cycle as one readable function, stage after stage.

Stages talk only through files in the run directory, which a user can open and other tools read:

    runs/<name>/recipe.json      the exact resolved recipe
    runs/<name>/tokenizer/       tokenizer.json + tokenizer_config.json (InternLM2 chat template)
    runs/<name>/shards/          packed token shards (train/ and val/)
    runs/<name>/train/<stage>/   metrics.jsonl, checkpoints/, hf/ (InternLM2 format) per stage
    runs/<name>/model/           the final model, InternLM2 format (+ tokenizer)
    runs/<name>/model-llama/     the same model in the Llama format, loadable by transformers
    runs/<name>/samples.json     generations from the checkpoint read back from disk

Stages so far: tokenizer -> shards -> pre-training (short stage, then the long-context stage) ->
sample. Until the web-data pipeline (`lmforge data`) joins the run, the shards are written straight
from the embedded corpora; evaluation joins as its issue lands.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lmforge import corpora
from lmforge.config import to_dict
from lmforge.generate import SamplingParams, stream
from lmforge.model import load_model, num_params
from lmforge.model.convert import convert
from lmforge.recipe import Recipe, SampleSection, TokenizerSection, model_config
from lmforge.shards import write_shard
from lmforge.tokenizer import Tokenizer, bytes_per_token, train_bpe
from lmforge.train import train

CORPUS_READERS = {"english": corpora.english_text, "chinese": corpora.chinese_news_text,
                  "pydoc": corpora.pydoc_text}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def corpus_texts(section: TokenizerSection) -> dict[str, str]:
    """The training text of each named embedded corpus, plus user files."""
    unknown = sorted(set(section.corpora) - set(CORPUS_READERS))
    if unknown:
        raise ValueError(f"tokenizer.corpora: unknown corpus {unknown}; choose from {sorted(CORPUS_READERS)}")
    texts = {name: CORPUS_READERS[name](max_chars=section.max_chars) for name in section.corpora}
    for f in section.files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer.files: {path} does not exist")
        texts[path.name] = path.read_text(encoding="utf-8", errors="replace")[: section.max_chars]
    return texts


def train_tokenizer(section: TokenizerSection, out_dir: Path, console: Console) -> Tokenizer:
    """Stage 1: a byte-level BPE on the embedded corpora, with compression per corpus."""
    texts = corpus_texts(section)
    start = time.perf_counter()
    tok = train_bpe(list(texts.values()), vocab_size=section.vocab_size, min_frequency=section.min_frequency)
    seconds = time.perf_counter() - start
    tok.save(out_dir)
    table = Table(title=f"tokenizer: {tok.vocab_size} tokens, trained in {seconds:.1f}s -> {out_dir}")
    for col in ("corpus", "characters", "bytes / token"):
        table.add_column(col, justify="right" if col != "corpus" else "left")
    for name, text in texts.items():
        sample = text[:200_000]  # compression is stable well before this
        table.add_row(name, f"{len(text):,}", f"{bytes_per_token(tok, sample):.2f}")
    console.print(table)
    return tok


def corpus_documents(texts: dict[str, str], min_chars: int = 600) -> list[str]:
    """Documents from the corpora: paragraphs (blank-line separated) or lines merged to min_chars."""
    docs = []
    for text in texts.values():
        parts = text.split("\n\n") if "\n\n" in text else text.splitlines()
        current = ""
        for part in parts:
            current = f"{current}\n\n{part}" if current else part
            if len(current) >= min_chars:
                docs.append(current)
                current = ""
    return docs


def write_corpus_shards(texts: dict[str, str], tok: Tokenizer, out_dir: Path, seed: int,
                        val_share: float = 0.05, n_shards: int = 4) -> tuple[Path, Path]:
    """Tokenize the corpora into train/val shards (BOS + document + EOS), val held out by document."""
    import random

    docs = corpus_documents(texts)
    random.Random(seed).shuffle(docs)
    ids = [[tok.bos_id, *row, tok.eos_id] for row in tok.encode_batch(docs)]
    n_val = max(1, int(len(ids) * val_share))
    for i in range(n_shards):
        write_shard(out_dir / "train", f"shard_{i:05d}", ids[n_val + i::n_shards], tok.vocab_size)
    write_shard(out_dir / "val", "shard_00000", ids[:n_val], tok.vocab_size)
    return out_dir / "train", out_dir / "val"


def pretrain(recipe: Recipe, tok: Tokenizer, tok_dir: Path, shards: tuple[Path, Path], out_dir: Path,
             console: Console) -> Path:
    """Pre-training, every stage of [train]; the final model is exported in both HF formats."""
    cfg = model_config(recipe.model, vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                       eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    console.print(f"model: {recipe.model.preset} preset, {num_params(cfg) / 1e6:.2f}M parameters "
                  f"(dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads}/{cfg.n_kv_heads} heads)")
    tc = dataclasses.replace(recipe.train, shards=str(shards[0]), val_shards=str(shards[1]), tokenizer=str(tok_dir),
                             out_dir=str(out_dir / "train"), seed=recipe.run.seed)
    results = train(cfg, tc, tc.out_dir, tokenizer_dir=str(tok_dir), resume=True, console=console)
    final = out_dir / "model"
    convert(results[-1].hf_dir, final, to="internlm2")
    convert(final, out_dir / "model-llama", to="llama")
    table = Table(title="pre-training")
    for col in ("stage", "steps", "val loss", "skipped", "seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in results:
        table.add_row(r.name, str(r.steps), f"{r.val_loss:.3f}" if r.val_loss else "-", str(r.skipped),
                      f"{r.seconds:.0f}")
    console.print(table)
    return final


def sample(ckpt: Path, section: SampleSection, seed: int, device: torch.device, console: Console) -> list[dict]:
    """Stage: read the checkpoint back from disk and stream a completion for each prompt."""
    model = load_model(ckpt, device=device)
    tok = Tokenizer.load(ckpt)
    results = []
    for i, prompt in enumerate(section.prompts):
        # One seed per prompt: with a shared random stream, a weak model's samples converge.
        params = SamplingParams(max_new_tokens=section.max_new_tokens, temperature=section.temperature,
                                top_k=section.top_k, top_p=section.top_p, seed=seed + i,
                                stop_token_ids=tuple(tok.stop_ids))
        console.print(f"[bold]{prompt}[/bold]", end="")
        start, n, text = time.perf_counter(), 0, ""
        for event in stream(model, [tok.encode(prompt, add_bos=True)], params, tok):
            console.print(event.text, end="", markup=False, highlight=False)
            text += event.text
            n += event.token_id is not None
        seconds = time.perf_counter() - start
        console.print(f"  [dim]({n} tokens, {n / seconds:.0f} tok/s)[/dim]")
        results.append({"prompt": prompt, "completion": text, "tokens": n, "seconds": round(seconds, 3)})
    return results


def run(recipe: Recipe, console: Console | None = None) -> dict:
    """Run every implemented stage of the recipe; returns a summary (also written to the run dir)."""
    console = console or Console()
    torch.manual_seed(recipe.run.seed)
    out = Path(recipe.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(to_dict(recipe), indent=2) + "\n")
    timings = {}

    start = time.perf_counter()
    tok = train_tokenizer(recipe.tokenizer, out / "tokenizer", console)
    timings["tokenizer"] = time.perf_counter() - start

    start = time.perf_counter()
    shards = write_corpus_shards(corpus_texts(recipe.tokenizer), tok, out / "shards", recipe.run.seed)
    timings["shards"] = time.perf_counter() - start

    start = time.perf_counter()
    ckpt = pretrain(recipe, tok, out / "tokenizer", shards, out, console)
    timings["pretrain"] = time.perf_counter() - start

    start = time.perf_counter()
    samples = sample(ckpt, recipe.sample, recipe.run.seed, resolve_device(recipe.run.device), console)
    timings["sample"] = time.perf_counter() - start
    (out / "samples.json").write_text(json.dumps(samples, indent=2, ensure_ascii=False) + "\n")

    table = Table(title=f"run {recipe.run.name}: {out}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("output")
    outputs = {"tokenizer": out / "tokenizer", "shards": out / "shards", "pretrain": ckpt,
               "sample": out / "samples.json"}
    for stage, seconds in timings.items():
        table.add_row(stage, f"{seconds:.1f}", str(outputs[stage]))
    console.print(table)
    summary = {"run_dir": str(out), "timings": timings, "samples": samples}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
