"""Scaling-law helper (Baichuan 2, arXiv 2309.10305 section 3.4; PAPERS.md section 3): train a
sweep of small models at a few compute budgets, fit the final loss to `L(C) = a * C^(-b) + c`
(C in FLOPs, c the irreducible loss), plot it, and predict the loss of a larger budget.

The fit scans the asymptote c on a grid below the smallest observed loss; for each c the power law
is a straight line in log-log space (least squares), and the c with the smallest squared error in
loss space wins. No optimiser library needed, and no starting guess that can send it astray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PowerLaw:
    a: float
    b: float
    c: float

    def __call__(self, compute: float | np.ndarray) -> float | np.ndarray:
        return self.a * np.power(compute, -self.b) + self.c


def fit_power_law(compute: list[float], loss: list[float], grid: int = 400) -> PowerLaw:
    """Least-squares fit of loss = a * compute^-b + c over at least three points."""
    C, L = np.asarray(compute, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if len(C) < 3:
        raise ValueError(f"a power law with an asymptote needs at least 3 runs, got {len(C)}")
    best, best_err = None, math.inf
    for c in np.linspace(0.0, L.min() * (1 - 1e-6), grid):
        slope, intercept = np.polyfit(np.log(C), np.log(L - c), 1)
        law = PowerLaw(a=float(np.exp(intercept)), b=float(-slope), c=float(c))
        err = float(((law(C) - L) ** 2).sum())
        if err < best_err:
            best, best_err = law, err
    return best


def plot_fit(compute: list[float], loss: list[float], law: PowerLaw, out_png: Path,
             predict_at: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    hi = max(max(compute), predict_at or 0) * 1.5
    xs = np.logspace(math.log10(min(compute) / 1.5), math.log10(hi), 200)
    ax.plot(xs, law(xs), "-", label=f"L = {law.a:.3g} C^-{law.b:.3f} + {law.c:.3f}")
    ax.plot(compute, loss, "o", label="runs")
    if predict_at:
        ax.plot([predict_at], [law(predict_at)], "*", ms=12, label=f"predicted {law(predict_at):.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("final validation loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def sweep(model_cfgs: dict, tc, out_dir: Path, console=None) -> list[dict]:
    """Train each named model config with the train section `tc`; return compute and final loss.
    Compute counts training FLOPs: flops_per_token x tokens seen."""
    from lmforge.model import flops_per_token, num_params
    from lmforge.train.trainer import train

    runs = []
    for name, cfg in model_cfgs.items():
        result = train(cfg, tc, Path(out_dir) / name, console=console)[-1]
        tokens = tc.steps * tc.global_batch * tc.seq_len
        runs.append({"name": name, "compute": flops_per_token(cfg, tc.seq_len) * tokens,
                     "loss": result.val_loss, "params": num_params(cfg)})
    return runs
