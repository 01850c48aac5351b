"""The NeedleBench heatmap: depth (rows) x context length (columns), red -> green, with the average.

Drawn with matplotlib's Agg backend (no display needed). A dashed line marks the model's trained
window, beyond which dynamic NTK scaling stretches RoPE (InternLM2 report, arXiv 2403.17297;
docs/papers.md §1, §9).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# NeedleBench's palette: red (0) -> amber -> green (100).
COLORS = ["#F0496E", "#EBB839", "#0CD79F"]


def _length_label(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def _draw(ax, scores, depths, lengths, title, window, row_labels, ylabel):
    """One heatmap on `ax`; returns the image (for a colour bar)."""
    from matplotlib.colors import LinearSegmentedColormap

    values = [v for row in scores for v in row]
    average = sum(values) / len(values) if values else float("nan")
    cmap = LinearSegmentedColormap.from_list("needlebench", COLORS)
    image = ax.imshow(scores, cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(scores):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8, color="black")
    ax.set_xticks(range(len(lengths)), [_length_label(n) for n in lengths])
    ax.set_yticks(range(len(depths)), row_labels or [f"{d:.0f}%" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel(ylabel)
    if window is not None and lengths and window < max(lengths):
        # Between the last length inside the window and the first beyond it.
        inside = sum(1 for n in lengths if n <= window)
        ax.axvline(inside - 0.5, color="black", linestyle="--", linewidth=1)
    ax.set_title(f"{title}\naverage {average:.1f}")
    return image


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(scores: Sequence[Sequence[float]], depths: Sequence[float], lengths: Sequence[int],
                 path: str | Path, title: str, window: int | None = None, *,
                 row_labels: Sequence[str] | None = None, ylabel: str = "needle depth") -> Path:
    """Write a PNG of `scores[depth][length]` (0..100) and return its path; rows other than depths
    (multi-hop NIAH's hop counts) come with their own `row_labels` and `ylabel`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(lengths), 1.0 + 0.45 * len(depths)))
    image = _draw(ax, scores, depths, lengths, title, window, row_labels, ylabel)
    fig.colorbar(image, ax=ax, label="score")
    return _save(fig, path)


def plot_heatmaps(panels: Sequence[dict], path: str | Path) -> Path:
    """Several NIAH results side by side in one PNG (the model before and after the long-context stage);
    each panel is a `run_niah` result with a "title"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widest = max(len(p["lengths"]) for p in panels)
    fig, axes = plt.subplots(1, len(panels), squeeze=False, layout="constrained",
                             figsize=(len(panels) * (1.0 + 0.9 * widest) + 0.8, 1.0 + 0.45 * max(len(p["depths"]) for p in panels)))
    for ax, p in zip(axes[0], panels):
        image = _draw(ax, p["scores"], p["depths"], p["lengths"], p["title"], p.get("window"), None, "needle depth")
    fig.colorbar(image, ax=list(axes[0]), label="score")
    return _save(fig, path)
