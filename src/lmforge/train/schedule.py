"""Learning-rate schedules: InternLM2's warmup + cosine decay to 10% of the peak (InternLM2
report, arXiv 2403.17297; docs/papers.md §2), and warmup-stable-decay (WSD: constant after warmup,
then a linear decay over the last `decay_fraction` of training, which lets a run be extended or
branched before its decay)."""

from __future__ import annotations

import math


def lr_at(step: int, *, peak: float, total: int, warmup: int, schedule: str = "cosine",
          min_ratio: float = 0.1, decay_fraction: float = 0.2) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`."""
    floor = peak * min_ratio
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_start = total - int(round(decay_fraction * total))
        if step < decay_start:
            return peak
        progress = min(1.0, (step - decay_start) / max(1, total - decay_start))
        return peak - (peak - floor) * progress
    if schedule == "constant":
        return peak
    raise ValueError(f"train.schedule={schedule!r}: expected 'cosine', 'wsd' or 'constant'")
