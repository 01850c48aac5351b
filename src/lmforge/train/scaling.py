"""Scaling-law sweep (Baichuan 2, arXiv 2309.10305, section 3.4; docs/papers.md §3): train small
models at a few compute budgets and write `sweep.json` (loss, params, tokens, flops per run).
`lmforge eval scaling sweep.json` fits `L = E + A * C^-alpha` to it, plots it and predicts a larger
budget (lmforge.eval.scaling): the two stages meet through that file.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.model import ModelConfig, flops_per_token, num_params
from lmforge.train.config import TrainSection


def sweep(model_cfgs: dict[str, ModelConfig], tc: TrainSection, out_dir: str | Path, console=None) -> Path:
    """Train each named config with `tc`; write and return out_dir/sweep.json. Compute counts the
    training FLOPs of the run: flops_per_token (6N + attention) x tokens seen."""
    from lmforge.train.trainer import train

    out_dir = Path(out_dir)
    runs = []
    for name, cfg in model_cfgs.items():
        result = train(cfg, tc, out_dir / name, console=console)[-1]
        tokens = tc.steps * tc.global_batch * tc.seq_len
        runs.append({"name": name, "params": num_params(cfg), "tokens": tokens,
                     "flops": flops_per_token(cfg, tc.seq_len) * tokens, "loss": result.val_loss})
    path = out_dir / "sweep.json"
    path.write_text(json.dumps(runs, indent=2) + "\n")
    return path
