"""Scaling-law fits from a sweep: loss against compute (or parameters, or tokens), and a plot.

The form is the saturating power law of Kaplan et al. (2020) / Hoffmann et al. (2022),
`L(x) = E + A * x^(-alpha)`, fitted by least squares on log(L - E) for a grid of E below the
smallest loss (a closed-form line fit per E, so no optimiser and no starting values). A sweep
is a JSON list (or JSON lines) of runs with `loss` and any of `params`, `tokens`, `flops`; the
training stage writes one, and `flops` defaults to 6 * params * tokens (PaLM appendix B).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def read_sweep(path: str | Path) -> list[dict]:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        runs = json.loads(text)
    except json.JSONDecodeError:
        runs = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    runs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: expected a non-empty JSON list (or JSON lines) of runs")
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ValueError(f"{path}: run {i} is {run!r}, expected an object with 'loss' and 'flops' (or params, tokens)")
        if "loss" not in run:
            raise ValueError(f"{path}: run {i} has no 'loss'")
        if "flops" not in run and "params" in run and "tokens" in run:
            run["flops"] = 6.0 * run["params"] * run["tokens"]
    return runs


def fit_power_law(x: list[float], loss: list[float], n_grid: int = 400) -> dict:
    """E, A, alpha of L = E + A x^-alpha, and R^2 of the fit in log space."""
    x_arr, l_arr = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    if len(x_arr) < 3 or np.any(x_arr <= 0):
        raise ValueError("a scaling fit needs at least 3 runs with positive x")
    best = None
    for e in np.linspace(0.0, l_arr.min() * 0.999, n_grid):
        y = np.log(l_arr - e)
        slope, intercept = np.polyfit(np.log(x_arr), y, 1)
        residual = float(np.sum((y - (slope * np.log(x_arr) + intercept)) ** 2))
        if best is None or residual < best[0]:
            best = (residual, e, slope, intercept, y)
    residual, e, slope, intercept, y = best
    total = float(np.sum((y - y.mean()) ** 2)) or 1.0
    return {"E": float(e), "A": math.exp(intercept), "alpha": float(-slope), "r2": 1.0 - residual / total}


def predict(fit: dict, x: float) -> float:
    return fit["E"] + fit["A"] * x ** (-fit["alpha"])


def plot_fit(runs: list[dict], fit: dict, x_key: str, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r[x_key] for r in runs]
    grid = np.geomspace(min(xs) / 2, max(xs) * 4, 100)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, [r["loss"] for r in runs], color="#1f77b4", label="runs", zorder=3)
    ax.plot(grid, [predict(fit, g) for g in grid], color="#d62728",
            label=f"L = {fit['E']:.3f} + {fit['A']:.3g} x^-{fit['alpha']:.3f}  (R²={fit['r2']:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel(x_key)
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.set_title(f"scaling fit: loss vs {x_key}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_scaling(sweep: str | Path, x_key: str = "flops", out: str | Path | None = None) -> dict:
    """`lmforge eval scaling`: fit a sweep and plot it (default: <sweep>.png beside the file)."""
    runs = read_sweep(sweep)
    missing = [i for i, r in enumerate(runs) if x_key not in r]
    if missing:
        raise ValueError(f"{sweep}: run(s) {missing} have no {x_key!r} (nor params and tokens to derive flops)")
    fit = fit_power_law([r[x_key] for r in runs], [r["loss"] for r in runs])
    out = Path(out) if out is not None else Path(sweep).with_suffix(".png")
    fit["plot"] = str(plot_fit(runs, fit, x_key, out))
    print(f"L({x_key}) = {fit['E']:.4f} + {fit['A']:.4g} * {x_key}^-{fit['alpha']:.4f}  (R^2 {fit['r2']:.4f}) "
          f"-> {fit['plot']}")
    return fit
