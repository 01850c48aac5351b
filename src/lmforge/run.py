"""`lmforge run RECIPE`: the InternLM2 life cycle as one readable function, stage after stage.

Stages talk only through files in the run directory, which a user can open and other tools read:

    runs/<name>/recipe.json      the exact resolved recipe
    runs/<name>/tokenizer/       tokenizer.json + tokenizer_config.json (InternLM2 chat template)
    runs/<name>/model/           an InternLM2-format Hugging Face checkpoint (+ tokenizer)
    runs/<name>/model-llama/     the same model in the Llama format, loadable by transformers
    runs/<name>/samples.json     generations from the checkpoint read back from disk

Implemented so far (issue: foundation): tokenizer -> model -> sample. The data pipeline,
pre-training, the long-context stage and evaluation join here as their issues land.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lmforge import corpora
from lmforge.config import to_dict
from lmforge.generate import SamplingParams, stream
from lmforge.model import InternLM2, load_model, num_params, save_checkpoint
from lmforge.model.convert import convert
from lmforge.recipe import Recipe, SampleSection, TokenizerSection, model_config
from lmforge.tokenizer import Tokenizer, bytes_per_token, train_bpe

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


def build_model(recipe: Recipe, tok: Tokenizer, out_dir: Path, console: Console) -> Path:
    """Stage 2 (until pre-training lands): a randomly initialised model saved in both HF formats."""
    cfg = model_config(recipe.model, vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                       eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    model = InternLM2(cfg)
    model.init_weights(seed=recipe.run.seed)
    ckpt = out_dir / "model"
    save_checkpoint(model, ckpt, fmt="internlm2")
    tok.save(ckpt)
    convert(ckpt, out_dir / "model-llama", to="llama")
    console.print(f"model: {recipe.model.preset} preset, {num_params(cfg) / 1e6:.2f}M parameters "
                  f"(dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads}/{cfg.n_kv_heads} heads) -> {ckpt}")
    return ckpt


def sample(ckpt: Path, section: SampleSection, seed: int, device: torch.device, console: Console) -> list[dict]:
    """Stage: read the checkpoint back from disk and stream a completion for each prompt."""
    model = load_model(ckpt, device=device)
    tok = Tokenizer.load(ckpt)
    params = SamplingParams(max_new_tokens=section.max_new_tokens, temperature=section.temperature,
                            top_k=section.top_k, top_p=section.top_p, seed=seed,
                            stop_token_ids=tuple(tok.stop_ids))
    results = []
    for prompt in section.prompts:
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
    ckpt = build_model(recipe, tok, out, console)
    timings["model"] = time.perf_counter() - start

    start = time.perf_counter()
    samples = sample(ckpt, recipe.sample, recipe.run.seed, resolve_device(recipe.run.device), console)
    timings["sample"] = time.perf_counter() - start
    (out / "samples.json").write_text(json.dumps(samples, indent=2, ensure_ascii=False) + "\n")

    table = Table(title=f"run {recipe.run.name}: {out}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("output")
    outputs = {"tokenizer": out / "tokenizer", "model": ckpt, "sample": out / "samples.json"}
    for stage, seconds in timings.items():
        table.add_row(stage, f"{seconds:.1f}", str(outputs[stage]))
    console.print(table)
    summary = {"run_dir": str(out), "timings": timings, "samples": samples}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
