"""Pre-training from a recipe: the `pretrain` stage of `lmforge run`, and `lmforge train` (InternLM2
section 3.2).

    pretrain            every [train] stage (InternLM2's 4k -> 32k schedule, scaled down: a short
                        training stage, then the long-context one with a larger RoPE base), resumed
                        from the last checkpoint after a crash or kill; the final model exported as
                        InternLM2 (model/) and as Llama (model-llama/, loadable by transformers;
                        not for a model with smeared keys or QK-norm, which Llama lacks)
    train_from_recipe   `lmforge train RECIPE`: the recipe's [model] and [train] sections as they
                        are, on shards written by `lmforge data`, into train.out_dir

`pretrain` returns a JSON-able summary that the run-stage record keeps and the report reads.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lmforge.lifecycle.stage import RunStageInterrupted
from lmforge.recipe import Recipe, model_config


def _model_config_for(section, tok):
    """The model section's ModelConfig with the tokenizer's vocabulary and special token ids."""
    return model_config(section, vocab_size=tok.vocab_size, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id,
                        pad_token_id=tok.pad_id)


def train_stage_shards(value: str | None, shards_dir: Path) -> str | None:
    """A [[train.stages]] `shards` value: a path, or the name of a split the shards stage wrote."""
    if value and not Path(value).exists() and (shards_dir / value).is_dir():
        return str(shards_dir / value)
    return value


def metrics_summary(path: Path, warmup: int = 3) -> dict:
    """Final train loss, last validation loss, mean tokens/s and MFU of one training stage's metrics.jsonl."""
    from lmforge.train.metrics import read_metrics

    rows = read_metrics(path) if path.is_file() else []
    steps = [r for r in rows if "loss" in r]
    timed = steps[warmup:] or steps
    vals = [r for r in rows if "val_loss" in r]
    return {"steps": steps[-1]["step"] if steps else 0,
            "tokens": steps[-1]["tokens"] if steps else 0,
            "loss": statistics.fmean(r["loss"] for r in steps[-10:]) if steps else None,
            "val_loss": vals[-1]["val_loss"] if vals else None,
            "val_bpb": vals[-1].get("val_bpb") if vals else None,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed) if timed else None,
            "mfu": statistics.median(r["mfu"] for r in timed) if timed else None,
            "skipped": sum(bool(r.get("skipped")) for r in steps)}


def pretrain(recipe: Recipe, tokenizer_dir: Path, shards_dir: Path, folder: Path, console: Console) -> dict:
    from lmforge.model import num_params
    from lmforge.model.convert import convert
    from lmforge.model.hf import llama_refusal
    from lmforge.tokenizer import Tokenizer
    from lmforge.train import train

    cfg = _model_config_for(recipe.model, Tokenizer.load(tokenizer_dir))
    console.print(f"model: {recipe.model.preset} preset, {num_params(cfg) / 1e6:.2f}M parameters "
                  f"(dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads}/{cfg.n_kv_heads} heads)")
    train_stages = [dataclasses.replace(s, shards=train_stage_shards(s.shards, shards_dir),
                                        val_shards=train_stage_shards(s.val_shards, shards_dir))
                    for s in recipe.train.stages]
    tc = dataclasses.replace(recipe.train, shards=str(shards_dir / "train"), val_shards=str(shards_dir / "val"),
                             tokenizer=str(tokenizer_dir), out_dir=str(folder / "train"), seed=recipe.run.seed,
                             stages=train_stages)
    results = train(cfg, tc, tc.out_dir, tokenizer_dir=str(tokenizer_dir), resume=True, console=console,
                    device=recipe.run.device)
    if results[-1].interrupted:
        raise RunStageInterrupted(f"pre-training stopped at stage {results[-1].name} after writing a checkpoint; "
                                  "run the same command again to resume")
    convert(results[-1].hf_dir, folder / "model", to="internlm2")
    if llama_refusal(cfg) is None:  # transformers' Llama has no smeared keys or QK-norm
        convert(folder / "model", folder / "model-llama", to="llama")
    table = Table(title="pre-training")
    for col in ("stage", "steps", "loss", "val loss", "val bpb", "tokens/s", "MFU", "skipped"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    per_train_stage = {}
    for r in results:
        m = metrics_summary(r.metrics)
        per_train_stage[r.name] = {**m, "seconds": round(r.seconds, 2), "metrics": str(r.metrics.relative_to(folder))}
        table.add_row(r.name, str(m["steps"]), f"{m['loss']:.3f}" if m["loss"] else "-",
                      f"{m['val_loss']:.3f}" if m["val_loss"] else "-",
                      f"{m['val_bpb']:.3f}" if m["val_bpb"] else "-", f"{m['tokens_per_s'] or 0:,.0f}",
                      f"{100 * (m['mfu'] or 0):.1f}%", str(m["skipped"]))
    console.print(table)
    return {"params": num_params(cfg), "model": dataclasses.asdict(cfg), "stages": per_train_stage,
            "loss_png": "train/loss.png" if (folder / "train" / "loss.png").is_file() else None}


def train_from_recipe(recipe: Recipe, resume: bool = False):
    """`lmforge train RECIPE`: train the [model] on the [train] section's shards on `run.device`; the
    trainer's results. The recipe is checked first (`lifecycle.check`)."""
    from lmforge.lifecycle.check import check_train_recipe
    from lmforge.shards import list_shards, open_shard
    from lmforge.train import train

    check_train_recipe(recipe)
    tc = recipe.train
    if tc.tokenizer:
        from lmforge.tokenizer import Tokenizer

        cfg = _model_config_for(recipe.model, Tokenizer.load(tc.tokenizer))
    else:
        # No tokenizer given: the shards say how large the vocabulary is.
        vocab = max(open_shard(h).header.vocab_size for h in list_shards(tc.shards))
        cfg = model_config(recipe.model, vocab_size=vocab)
    return train(cfg, tc, tc.out_dir, tokenizer_dir=tc.tokenizer, resume=resume, device=recipe.run.device)
