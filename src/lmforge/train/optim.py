"""Optimizers for pre-training: AdamW with InternLM2's settings (beta 0.9 / 0.95, eps 1e-8, weight
decay 0.1 on matrices only; InternLM2 report, arXiv 2403.17297; docs/papers.md §2) and AdaLomo
(arXiv 2310.10195; docs/papers.md §6)."""

from __future__ import annotations

import torch

from lmforge.train.adalomo import AdaLomo


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay the matrices (embeddings, projections, head); never the norm gains."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float = 0.1,
                    betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                    clip_value: float = 0.0) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        # foreach keeps the step a handful of kernels; it also accepts FSDP2's DTensor parameters.
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)
    if name == "adalomo":
        return AdaLomo([{**g, "clip_value": clip_value} for g in groups], lr=lr, clip_value=clip_value)
    raise ValueError(f"train.optimizer={name!r}: expected 'adamw' or 'adalomo'")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
