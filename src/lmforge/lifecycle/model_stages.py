"""The model half of `lmforge run`: pre-training, evaluation and samples (InternLM2 sections 3.2, 5).

    pretrain   every [train] stage (InternLM2's 4k -> 32k schedule, scaled down: a short stage,
               then the long-context stage with a larger RoPE base), resumed from the last
               checkpoint after a crash or kill; the final model exported as InternLM2 (model/)
               and as Llama (model-llama/, loadable by transformers)
    eval       held-out perplexity per language (the validation documents), the benchmark tasks
               with `limit` examples each (OpenCompass-style PPL, generation and code modes),
               and the Needle-in-a-Haystack grid with its heatmap
    sample     completions of the recipe's prompts, streamed from the model read back from disk

Each function returns a JSON-able summary that the stage record keeps and the report reads.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lmforge.recipe import EvalSection, Recipe, SampleSection, model_config


class StageInterrupted(RuntimeError):
    """Training stopped on SIGTERM after writing a checkpoint; the same command resumes it."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def stage_shards(value: str | None, shards_dir: Path) -> str | None:
    """A [[train.stages]] `shards` value: a path, or the name of a split the shards stage wrote."""
    if value and not Path(value).exists() and (shards_dir / value).is_dir():
        return str(shards_dir / value)
    return value


def metrics_summary(path: Path, warmup: int = 3) -> dict:
    """Final train loss, last validation loss, mean tokens/s and MFU of one stage's metrics.jsonl."""
    from lmforge.train.metrics import read_metrics

    rows = read_metrics(path) if path.is_file() else []
    steps = [r for r in rows if "loss" in r]
    timed = steps[warmup:] or steps
    vals = [r for r in rows if "val_loss" in r]
    return {"steps": steps[-1]["step"] if steps else 0,
            "tokens": steps[-1]["tokens"] if steps else 0,
            "loss": statistics.fmean(r["loss"] for r in steps[-10:]) if steps else None,
            "val_loss": vals[-1]["val_loss"] if vals else None,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed) if timed else None,
            "mfu": statistics.median(r["mfu"] for r in timed) if timed else None,
            "skipped": sum(bool(r.get("skipped")) for r in steps)}


def pretrain(recipe: Recipe, tokenizer_dir: Path, shards_dir: Path, folder: Path, console: Console) -> dict:
    from lmforge.model import num_params
    from lmforge.model.convert import convert
    from lmforge.tokenizer import Tokenizer
    from lmforge.train import train

    tok = Tokenizer.load(tokenizer_dir)
    cfg = model_config(recipe.model, vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                       eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    console.print(f"model: {recipe.model.preset} preset, {num_params(cfg) / 1e6:.2f}M parameters "
                  f"(dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads}/{cfg.n_kv_heads} heads)")
    stages = [dataclasses.replace(s, shards=stage_shards(s.shards, shards_dir),
                                  val_shards=stage_shards(s.val_shards, shards_dir)) for s in recipe.train.stages]
    tc = dataclasses.replace(recipe.train, shards=str(shards_dir / "train"), val_shards=str(shards_dir / "val"),
                             tokenizer=str(tokenizer_dir), out_dir=str(folder / "train"), seed=recipe.run.seed,
                             stages=stages)
    results = train(cfg, tc, tc.out_dir, tokenizer_dir=str(tokenizer_dir), resume=True, console=console)
    if results[-1].interrupted:
        raise StageInterrupted(f"pre-training stopped at stage {results[-1].name} after writing a checkpoint; "
                               "run the same command again to resume")
    convert(results[-1].hf_dir, folder / "model", to="internlm2")
    convert(folder / "model", folder / "model-llama", to="llama")
    table = Table(title="pre-training")
    for col in ("stage", "steps", "loss", "val loss", "tokens/s", "MFU", "skipped"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    per_stage = {}
    for r in results:
        m = metrics_summary(r.metrics)
        per_stage[r.name] = {**m, "seconds": round(r.seconds, 2), "metrics": str(r.metrics.relative_to(folder))}
        table.add_row(r.name, str(m["steps"]), f"{m['loss']:.3f}" if m["loss"] else "-",
                      f"{m['val_loss']:.3f}" if m["val_loss"] else "-", f"{m['tokens_per_s'] or 0:,.0f}",
                      f"{100 * (m['mfu'] or 0):.1f}%", str(m["skipped"]))
    console.print(table)
    return {"params": num_params(cfg), "model": dataclasses.asdict(cfg), "stages": per_stage,
            "loss_png": "train/loss.png" if (folder / "train" / "loss.png").is_file() else None}


def evaluate(section: EvalSection, model_dir: Path, shards_dir: Path, device: str, seed: int, folder: Path,
             console: Console) -> dict:
    from lmforge.eval.harness import run_eval
    from lmforge.eval.niah import run_niah_checkpoint
    from lmforge.eval.perplexity import run_perplexity

    summary: dict = {}
    files = [str(shards_dir / f"val_{lang}.txt") for lang in section.ppl_langs
             if (shards_dir / f"val_{lang}.txt").is_file()]
    if files:
        ppl = run_perplexity(model_dir, langs=(), files=files, max_windows=section.ppl_max_windows, device=device,
                             out=folder / "perplexity.json")
        summary["perplexity"] = {Path(name).stem.removeprefix("val_"): {k: r[k] for k in ("tokens", "ppl",
                                                                                        "bits_per_byte")}
                                 for name, r in ppl.items()}
    if section.tasks:
        results = run_eval(model_dir, section.tasks, limit=section.limit, out=folder / "benchmarks", device=device,
                           max_new_tokens=section.max_new_tokens, seed=seed, show_progress=console.is_terminal)
        summary["benchmarks"] = {name: {"mode": t["mode"], "n": t["n"], "metrics": t["metrics"],
                                        "seconds": t.get("seconds")} for name, t in results["tasks"].items()}
    if section.niah_kinds:
        niah = run_niah_checkpoint(model_dir, kinds=section.niah_kinds, lengths=section.niah_lengths or None,
                                   depths=section.niah_depths, repeats=section.niah_repeats, out=folder / "niah",
                                   device=device, seed=seed)
        summary["niah"] = {kind: {"average": r["average"], "exact_average": r["exact_average"],
                                  "lengths": r["lengths"], "depths": r["depths"], "scores": r["scores"],
                                  "window": r["window"], "heatmap": str(Path(r["heatmap"]).relative_to(folder)),
                                  **({"answer_logprob_by_length": r["answer_logprob_by_length"]}
                                     if "answer_logprob_by_length" in r else {})}
                           for kind, r in niah.items()}
    return summary


def sample(model_dir: Path, section: SampleSection, seed: int, device: torch.device, console: Console) -> list[dict]:
    """Read the model back from disk and stream a completion for each prompt."""
    from lmforge.generate import SamplingParams, stream
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer

    model = load_model(model_dir, device=device)
    tok = Tokenizer.load(model_dir)
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
