"""LoRA: low-rank adapters for fine-tuning (Hu et al., arXiv 2106.09685, section 4.1).

A frozen weight W (out x in) is used as W + (alpha / r) * B @ A, with A (r x in) drawn like a
Kaiming-uniform init and B (out x r) zero, so training starts from the model as it is. Only A and
B train. The adapter is a `torch.nn.utils.parametrize` parametrization of the layer's `weight`: every
path that reads the weight (training, the fused SwiGLU product, NormHead) reads the adapted one, and
the model file knows nothing of LoRA. `merge_lora` folds the adapters into the weights for export.

peft is not used: its LoRA wraps layers in new modules, which the model's own fused kernels and the
HF export do not expect; tests/align check this module against peft's LoRA and against the formula.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

# Which of the model's linear maps get adapters, by the attribute name of the layer.
TARGETS = ("wqkv", "wo", "w1", "w2", "w3")


class LoRA(nn.Module):
    """The parametrization W -> W + scale * B @ A."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float, dtype=None, device=None):
        super().__init__()
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's (and peft's) init

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_B @ self.lora_A)


def apply_lora(model: nn.Module, rank: int, alpha: float, targets: tuple[str, ...] = TARGETS,
               seed: int = 0) -> list[str]:
    """Freeze every parameter of `model` and give the target layers adapters; returns their names."""
    if rank < 1:
        raise ValueError(f"lora rank = {rank}: must be >= 1")
    unknown = set(targets) - set(TARGETS) - {"output"}
    if unknown:
        raise ValueError(f"lora targets {sorted(unknown)}: not layers of the model; choose from "
                         f"{list(TARGETS) + ['output']}")
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            w = module.weight
            parametrize.register_parametrization(
                module, "weight", LoRA(w.shape[0], w.shape[1], rank, alpha, w.dtype, w.device))
            names.append(name)
    if not names:
        raise ValueError(f"no layer of the model is named one of {list(targets)}")
    return names


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if "lora_A" in n or "lora_B" in n]


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its weight (W += scale * B @ A) and remove it; returns how many."""
    n = 0
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            module.weight.requires_grad_(True)
            n += 1
    return n
