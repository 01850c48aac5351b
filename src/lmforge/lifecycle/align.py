"""The `sft`, `rm` and `polar` stages of `lmforge run` (InternLM2 report, arXiv 2403.17297, sections
4.1-4.2; POLAR, arXiv 2507.05197): the pre-trained model fine-tuned on the recipe's conversations (by
default the built-in checkable tasks, with held-out accuracy before and after), then the reward
model(s) started from the SFT model, then POLAR's reward model pre-trained on a pool of the run's
own policies.
Each returns the JSON-able summary that the run-stage record keeps and the report reads; a killed
stage resumes from its last checkpoint (its folder is kept while its key is the same).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from lmforge.lifecycle.stage import RunStageInterrupted
from lmforge.recipe import Recipe


def sft_stage(recipe: Recipe, model_dir: Path, folder: Path, console: Console) -> dict:
    from lmforge.align.sft import sft

    cfg = dataclasses.replace(recipe.sft, init_from=str(model_dir), out_dir=str(folder))
    summary = sft(cfg, folder, resume=True, console=console, device=recipe.run.device)
    if summary.get("interrupted"):
        raise RunStageInterrupted(f"sft stopped at step {summary['steps']}; run the same command to resume")
    return {k: summary.get(k) for k in ("model", "conversations", "assistant_tokens", "steps", "final_loss",
                                         "lora_rank", "accuracy_before", "accuracy_after", "one_answer", "pass_at_k",
                                         "samples", "seconds")}


def rm_stage(recipe: Recipe, sft_model: Path, folder: Path, console: Console) -> dict:
    from lmforge.align.rm import rm

    cfg = dataclasses.replace(recipe.rm, init_from=str(sft_model), out_dir=str(folder))
    try:
        summary = rm(cfg, folder, resume=True, console=console, device=recipe.run.device)
    except InterruptedError as e:
        raise RunStageInterrupted(str(e)) from None
    return {k: summary.get(k) for k in ("members", "soup", "pairs", "held_out_pairs", "biased_pairs", "loss",
                                         "accuracy", "seconds")}


def default_policies(pretrained: Path, sft_dir: Path) -> list[str]:
    """POLAR's pool in a run: the pre-trained model, SFT's earliest kept checkpoint and the SFT model."""
    from lmforge.train.export import is_training_checkpoint

    ckpts = sorted(p for p in (sft_dir / "checkpoints").glob("step_*") if is_training_checkpoint(p))
    return [str(pretrained), *([str(ckpts[0])] if len(ckpts) > 1 else []), str(sft_dir / "model")]


def polar_stage(recipe: Recipe, pretrained: Path, sft_dir: Path, folder: Path, console: Console) -> dict:
    from lmforge.align.polar import polar

    cfg = dataclasses.replace(recipe.polar, init_from=str(sft_dir / "model"), out_dir=str(folder),
                              policies=recipe.polar.policies or default_policies(pretrained, sft_dir))
    try:
        summary = polar(cfg, folder, resume=True, console=console, device=recipe.run.device)
    except InterruptedError as e:
        raise RunStageInterrupted(str(e)) from None
    return {k: summary.get(k) for k in ("model", "policies", "pretraining_pairs", "finetuning_pairs",
                                         "held_out_triples", "accuracy", "seconds")}


def rl_stage(recipe: Recipe, sft_model: Path, folder: Path, console: Console) -> dict:
    from lmforge.align.rl import rl

    cfg = dataclasses.replace(recipe.rl, init_from=str(sft_model), out_dir=str(folder))
    if cfg.ptx and not cfg.ptx_data:  # COOL's PTX rows: the run's own pre-training shards
        cfg = dataclasses.replace(cfg, ptx_data=str(folder.parent / "shards" / "train"))
    summary = rl(cfg, folder, resume=True, console=console, device=recipe.run.device)
    if summary.get("interrupted"):
        raise RunStageInterrupted(f"rl stopped at step {summary['steps']}; run the same command to resume")
    return {k: summary.get(k) for k in ("model", "algorithm", "steps", "accuracy_before", "accuracy_after", "samples",
                                         "curves", "seconds", "tasks", "accuracy_every_before", "accuracy_every_after",
                                         "change", "one_answer", "one_answer_every")}
