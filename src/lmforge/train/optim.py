"""Optimizers for pre-training: AdamW with InternLM2's settings (beta 0.9 / 0.95, eps 1e-8, weight
decay 0.1 on matrices only; InternLM2 report, arXiv 2403.17297; docs/papers.md §2), AdaLomo
(arXiv 2310.10195; docs/papers.md §6), and Muon beside AdamW (`torch.optim.Muon`: momentum
orthogonalised by Newton-Schulz iterations for the transformer blocks' matrices, AdamW for the
embeddings, the LM head and the norm gains, as Keller Jordan's Muon and the modded-nanoGPT speedruns
split them; "Muon is Scalable for LLM Training", arXiv 2502.16982, for the update scale that lets
Muon reuse AdamW's learning rate). Muon departs from InternLM2's recipe: a recipe option, not a
default."""

from __future__ import annotations

import torch

from lmforge.train.adalomo import AdaLomo


def param_groups(model: torch.nn.Module, weight_decay: float, embed_lr_scale: float = 1.0,
                 head_lr_scale: float = 1.0, smear_lr_scale: float = 1.0) -> list[dict]:
    """Decay the matrices (embeddings, projections, head); never the norm gains. The embedding
    matrix, the LM head and the smeared-key gates get groups of their own when their learning rate
    is scaled (`lr_scale`, which `set_lr` applies); otherwise the two groups of one rate."""
    if getattr(getattr(model, "cfg", None), "tie_embeddings", False) and head_lr_scale != embed_lr_scale:
        raise ValueError(f"head_lr_scale={head_lr_scale} differs from embed_lr_scale={embed_lr_scale}, but the "
                         "model's head and embedding are one tied matrix; give them the same scale")
    decay, no_decay, own = [], [], {}
    scales = {"tok_embeddings.weight": embed_lr_scale, "output.weight": head_lr_scale}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # the gates by suffix (wrapping the blocks may prefix their names); the embedding and head by
        # their top-level names: `parallelize` wraps and compiles the blocks only, so these never change
        if name.endswith("attention.smear") and smear_lr_scale != 1.0:  # one group for every layer's gates
            gates = own.setdefault("smear", {"params": [], "weight_decay": 0.0, "lr_scale": smear_lr_scale})
            gates["params"].append(p)
        elif scales.get(name, 1.0) != 1.0:
            own[name] = {"params": [p], "weight_decay": weight_decay, "lr_scale": scales[name]}
        else:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0},
            *own.values()]


class OptimizerList:
    """Several optimizers over disjoint parameters, stepped together: what Muon + AdamW needs. The
    checkpoint code passes `.optimizers` to torch.distributed.checkpoint, which takes a list."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)


def muon_split(model: torch.nn.Module) -> tuple[list, list]:
    """(the blocks' 2-D matrices, everything else): Muon takes the first, AdamW the embeddings, the
    LM head (whose rows are per-token, not a linear map to orthogonalise) and the norm gains."""
    hidden, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (hidden if p.dim() == 2 and ".layers." in f".{name}" else rest).append(p)
    return hidden, rest


def build_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float = 0.1,
                    betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                    clip_value: float = 0.0, embed_lr_scale: float = 1.0,
                    head_lr_scale: float = 1.0, smear_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, embed_lr_scale, head_lr_scale, smear_lr_scale)
    if name == "adamw":
        # foreach keeps the step a handful of kernels; it also accepts FSDP2's DTensor parameters.
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)
    if name == "adalomo":
        return AdaLomo([{**g, "clip_value": clip_value} for g in groups], lr=lr, clip_value=clip_value)
    if name == "muon":
        hidden, rest = muon_split(model)
        decay = [p for p in rest if p.dim() >= 2]
        adamw = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}],
                                  lr=lr, betas=betas, eps=eps, foreach=True)
        # "match_rms_adamw" scales each matrix's update to AdamW's RMS (0.2 sqrt(max(A, B))), so one
        # learning rate and schedule serve both.
        muon = torch.optim.Muon(hidden, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
        return OptimizerList([muon, adamw])
    raise ValueError(f"train.optimizer={name!r}: expected 'adamw', 'adalomo' or 'muon'")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
