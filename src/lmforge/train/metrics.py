"""Training metrics: a progress line per step (loss, lr, grad norm, tokens/s, MFU, as InternEvo and
nanochat print), JSONL and TensorBoard records, and the loss-curve PNG at the end.

MFU = achieved model FLOPs per second / peak FLOPs per second. The model FLOPs per token are
`flops_per_token` (6N + causal attention counted once, PaLM appendix B). The peak is the
accelerator's dense bf16 figure when known; on CPU it is measured here, per core, so that a busy
neighbour cannot shrink it (`measured_peak_flops`); docs/training.md says how the figure is made.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import torch
from rich.console import Console

# Dense bf16 peak FLOP/s of common accelerators (vendor data sheets).
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
                 "L40S": 362e12, "4090": 165e12}
PEAK_ENV = "LMFORGE_PEAK_FLOPS"  # a user who knows the peak of their machine sets it (FLOP/s)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _peak_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmforge" / "peak_flops.json"


def _remember_peak(key: str, value: float) -> float:
    """The best per-core figure ever measured on this kind of CPU, kept on disk: a measurement taken
    while a neighbour is busy is lower and never replaces a better one."""
    path = _peak_cache()
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        known = {}
    best = max(value, float(known.get(key, 0.0)))
    if best > known.get(key, 0.0):
        try:
            from lmforge.atomic import write_json

            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {**known, key: best})
        except OSError:  # a read-only home: the figure of this process is still right
            pass
    return best


def _matmul_flops(device: torch.device, dtype: torch.dtype, n: int, iters: int) -> float:
    """Best achieved FLOP/s of an n x n matmul over `iters` tries."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    a @ b  # warm-up: thread pool and allocator
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


@functools.cache
def measured_peak_flops(device_type: str, dtype: torch.dtype = torch.float32, n: int = 512,
                        iters: int = 40) -> float:
    """The practical peak FLOP/s of this device for MFU.

    On CPU: one core's best matmul FLOP/s (best of many short tries, so a neighbour that holds
    another core, or this one for part of the time, does not lower it), times the threads torch
    uses, and never below the best per-core figure measured before on this CPU model (kept in
    ~/.cache/lmforge/peak_flops.json). Several cores never run faster than that many times one,
    so MFU against this peak cannot pass 100% when the FLOP count is right, and a busy machine
    shows a lower MFU instead of a higher one. `LMFORGE_PEAK_FLOPS` overrides it.
    """
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV])
    device = torch.device(device_type)
    if device.type != "cpu":
        return _matmul_flops(device, dtype, max(n, 4096), iters)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_core = _matmul_flops(device, dtype, n, iters)
    finally:
        torch.set_num_threads(threads)
    return threads * _remember_peak(f"{_cpu_name()}|{dtype}|n={n}", one_core)


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    if device.type == "cuda" and not os.environ.get(PEAK_ENV):
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAK_BF16.items():
            if key in name:
                return value if dtype == torch.bfloat16 else value / 2
    return measured_peak_flops(device.type, dtype)


def mfu(flops_per_second: float, peak: float) -> float:
    """Model FLOPs utilisation. A figure above 1 means the peak was underestimated (a machine that
    was busy through every try of the measurement): it is capped at 1 rather than printed."""
    return min(flops_per_second / peak, 1.0)


class MetricsLogger:
    """Writes metrics.jsonl (+ TensorBoard) on the main process and prints a progress line."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool = True, console: Console | None = None,
                 resume_step: int | None = None):
        self.enabled = enabled
        self.console = console or Console()
        self.path = Path(out_dir) / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except ImportError:
                self.console.print("[dim]tensorboard not installed: metrics go to metrics.jsonl only "
                                   "(pip install 'lmforge\\[train]')[/dim]")

    def _truncate_after(self, step: int) -> None:
        """Drop records of steps after the checkpoint we resume from (they will be redone)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def log(self, record: dict, print_line: bool = True) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.writer.add_scalar(key, value, record["step"])
        if print_line:
            self.console.print(format_line(record), highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def format_line(r: dict) -> str:
    if "val_loss" in r and "loss" not in r:
        bpb = f" | val bpb {r['val_bpb']:.4f}" if r.get("val_bpb") is not None else ""
        return f"step {r['step']:>6} | val loss {r['val_loss']:.4f}{bpb}"
    if "loss" not in r:  # another evaluation record (e.g. RL's held-out accuracy)
        return " | ".join([f"step {r['step']:>6}", *(f"{k} {v:.4f}" for k, v in r.items()
                                                     if k != "step" and isinstance(v, int | float))])
    parts = [f"step {r['step']:>6}", f"loss {r['loss']:.4f}", f"lr {r['lr']:.2e}"]
    if r.get("grad_norm") is not None:
        parts.append(f"gnorm {r['grad_norm']:.3f}")
    parts += [f"{r[k]:.3f} {k}" for k in ("acc", "margin", "reward", "accuracy", "kl")  # preference and RL losses
              if r.get(k) is not None]
    parts.append(f"{r['tokens_per_s']:,.0f} tok/s")
    if r.get("mfu") is not None:
        parts.append(f"MFU {100 * r['mfu']:.1f}%")
    if r.get("skipped"):
        parts.append(f"[yellow]skipped: {r['skip_reason']}[/yellow]")
    return " | ".join(parts)


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_losses(curves: dict[str, Path], out_png: Path) -> Path | None:
    """Training and validation loss of one or more stages (label -> metrics.jsonl) in one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    offset = 0
    for label, path in curves.items():
        records = read_metrics(path)
        train = [(r["step"] + offset, r["loss"]) for r in records if "loss" in r and not r.get("skipped")]
        val = [(r["step"] + offset, r["val_loss"]) for r in records if "val_loss" in r]
        if train:
            line, = ax.plot(*zip(*train), lw=1, alpha=0.8, label=f"{label} train")
            if val:
                ax.plot(*zip(*val), "o-", color=line.get_color(), ms=4, label=f"{label} val")
            offset = train[-1][0]
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
