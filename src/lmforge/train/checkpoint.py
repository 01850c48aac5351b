"""Training checkpoints with torch.distributed.checkpoint (DCP): model, optimizer, trainer state
(step, loader position, loss-spike history, schedule) and each process's RNG states.

A checkpoint is written into `step_XXXXXXXX.tmp/` and renamed to `step_XXXXXXXX/` only when every
process has finished, then `latest` is updated by an atomic rename: a run killed at any moment
leaves the previous checkpoint intact and no half-written one that looks complete. DCP stores each
tensor with its global shape, so a checkpoint written by N processes loads into M.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from lmforge.atomic import write_atomic
from lmforge.train.parallel import DistInfo, barrier


@contextlib.contextmanager
def _quiet_dcp():
    """DCP warns on every single-process save/load; one process is a supported, intended mode here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


LATEST = "latest"


def _rng_state() -> dict:
    # Only torch's generators drive training randomness; the loader's order comes from its seed.
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _optimizers(optimizer):
    """What torch.distributed.checkpoint takes: one optimizer, or the list inside an OptimizerList (Muon + AdamW)."""
    return getattr(optimizer, "optimizers", optimizer)


def save_training_checkpoint(root: Path, step: int, model, optimizer, trainer_state: dict, info: DistInfo,
                    keep: int = 2) -> Path:
    root = Path(root)
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    if info.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    barrier(info)
    model_sd, optim_sd = get_state_dict(model, _optimizers(optimizer))
    with _quiet_dcp():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save(_rng_state(), tmp / f"rng_rank{info.rank}.pt")
    if info.is_main:
        (tmp / "trainer_state.json").write_text(json.dumps({**trainer_state, "world_size": info.world_size},
                                                           indent=2) + "\n")
    barrier(info)
    if info.is_main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_atomic(root / LATEST, final.name + "\n")
        for old in sorted(root.glob("step_????????"))[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / pointer.read_text().strip()
    return path if (path / "trainer_state.json").is_file() else None


def load_training_checkpoint(path: Path, model, optimizer, info: DistInfo) -> dict:
    """Restore model and optimizer in place; return the trainer state. RNG states are restored when
    the process count is unchanged (with another count there is no rank-to-rank correspondence)."""
    path = Path(path)
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{path}: not a complete training checkpoint (no trainer_state.json)")
    model_sd, optim_sd = get_state_dict(model, _optimizers(optimizer))
    state = {"model": model_sd, "optim": optim_sd}
    with _quiet_dcp():
        dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, _optimizers(optimizer), model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer_state = json.loads(state_file.read_text())
    rng_file = path / f"rng_rank{info.rank}.pt"
    if trainer_state.get("world_size") == info.world_size and rng_file.is_file():
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return trainer_state
