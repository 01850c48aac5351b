"""Loss-spike handling as InternEvo and OLMo do it (InternLM2 report, arXiv 2403.17297;
docs/papers.md §2): skip the optimizer update when the loss or the gradient norm is non-finite, or
is an upward outlier (z-score above a limit) against the recent steps. Skipped steps are counted
and logged.

Every finite step enters the history, skipped ones included (as OLMo's skip-step optimizer does):
an isolated spike is skipped, but when the loss or gradient norm moves to a new level for good,
the history follows within a few steps. A history of accepted steps only would skip forever.
"""

from __future__ import annotations

import math
from collections import deque


class SpikeDetector:
    def __init__(self, window: int = 50, zscore: float = 6.0, min_history: int = 20):
        self.zscore, self.min_history = zscore, min_history
        self.losses: deque[float] = deque(maxlen=window)
        self.norms: deque[float] = deque(maxlen=window)
        self.skipped = 0

    @staticmethod
    def _z(history, value: float) -> float:
        mean = sum(history) / len(history)
        std = math.sqrt(sum((h - mean) ** 2 for h in history) / len(history))
        return (value - mean) / max(std, 1e-8 * max(1.0, abs(mean)))

    def check(self, loss: float, grad_norm: float | None = None) -> str | None:
        """The reason to skip this update, or None to apply it."""
        if not math.isfinite(loss):
            return "non-finite loss"
        if grad_norm is not None and not math.isfinite(grad_norm):
            return "non-finite grad norm"
        if self.zscore <= 0 or len(self.losses) < self.min_history:
            return None
        z = self._z(self.losses, loss)
        if z > self.zscore:
            return f"loss spike (z={z:.1f})"
        if grad_norm is not None and len(self.norms) >= self.min_history:
            z = self._z(self.norms, grad_norm)
            if z > self.zscore:
                return f"grad-norm spike (z={z:.1f})"
        return None

    def record(self, loss: float, grad_norm: float | None = None, skipped: bool = False) -> None:
        """Add a step to the history (after `check`), whether or not its update was applied."""
        self.skipped += skipped
        if math.isfinite(loss):
            self.losses.append(loss)
        if grad_norm is not None and math.isfinite(grad_norm):
            self.norms.append(grad_norm)

    def state_dict(self) -> dict:
        return {"losses": list(self.losses), "norms": list(self.norms), "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.losses.extend(state["losses"])
        self.norms.extend(state["norms"])
        self.skipped = state["skipped"]
