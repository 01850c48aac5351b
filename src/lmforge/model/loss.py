"""Language-modelling loss: token cross-entropy plus Baichuan 2's max-z loss.

Max-z loss (Baichuan 2, arXiv 2309.10305 section 2.4; PAPERS.md section 3): add
`coef * z^2` where z is the largest logit of each token, which keeps logits from drifting to large
values that make bf16 inference fragile. The paper uses coef = 2e-4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0,
            ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean loss over the non-ignored targets, and its parts for logging.

    logits (B, T, V) and targets (B, T) are already aligned (targets are the next tokens).
    """
    logits = logits.float()
    flat = logits.view(-1, logits.shape[-1])
    tgt = targets.reshape(-1)
    ce = F.cross_entropy(flat, tgt, ignore_index=ignore_index)
    parts = {"ce": ce.detach()}
    loss = ce
    if z_loss > 0:
        keep = tgt != ignore_index
        z = flat.max(dim=-1).values[keep]
        zl = z_loss * z.pow(2).mean() if z.numel() else flat.sum() * 0
        parts["z_loss"] = zl.detach()
        loss = loss + zl
    return loss, parts
