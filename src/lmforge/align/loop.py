"""The optimisation loop of the alignment stages (SFT, reward models, DPO): the pre-training
`Trainer` (parallel wrapping, optimizer, loss-spike skipping, checkpoints) driven by any loader with
`next_step()` / `state_dict()` and any loss of `lmforge.train.losses` / `lmforge.align.losses`.

The same contract as a pre-training stage: a checkpoint every `ckpt_every` steps and at the end,
SIGTERM finishes the step, writes a checkpoint and returns `interrupted`, and `resume` continues from
the last checkpoint with the loader where it was, so a killed run loses at most `ckpt_every` steps.
Metrics go to metrics.jsonl and TensorBoard like pre-training's.

`setup` arranges the processes as `lmforge train` does (`trainer.distributed_for`): dp x head x
context from the section's `sequence_parallel`, so the trainer cuts each row into the rank's
zigzag shard and the loader splits the batch over the data-parallel ranks only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from lmforge.train.metrics import MetricsLogger
from lmforge.train.schedule import lr_at
from lmforge.train.trainer import StepCheckpoints, Trainer, distributed_for


def setup(name: str, cfg, out_dir: str | Path, device: str, console: Console | None):
    """(out_dir, process info, console) for an alignment stage; refuses a section without init_from.
    The processes are arranged dp x head x context by the section's `sequence_parallel`."""
    if not cfg.init_from:
        raise ValueError(f"{name}.init_from is empty: name the HF model directory to start from")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = distributed_for(cfg.train_section(), device)
    return out_dir, info, console or Console(quiet=not info.is_main)


def report_skipped(path: str, skipped, console: Console) -> None:
    """One line on the bad records a reader counted and skipped (lmforge.align.conversations)."""
    if skipped.total:
        console.print(f"[yellow]{path}: skipped {skipped.total} bad record(s): {dict(skipped.counts)}; "
                      f"first: {skipped.places[0]}[/yellow]")


@dataclass
class LoopResult:
    steps: int
    skipped: int
    last: dict  # the last step's logged values (loss and parts)
    interrupted: bool
    seconds: float


def fit(trainer: Trainer, loader, loss_fn, out_dir: Path, *, resume: bool, console: Console) -> LoopResult:
    """Train `trainer.tc.steps` optimizer steps from the last checkpoint (with `resume`) on."""
    tc, info = trainer.tc, trainer.info
    began = time.perf_counter()
    ckpt_root = out_dir / "checkpoints"
    step = 0
    if resume and (state := trainer.restore(ckpt_root)) is not None:
        step = state["step"]
        loader.load_state_dict(state["loader"])
        if "loss" in state:  # a loss with running state of its own (MPO's reward shift)
            loss_fn.load_state_dict(state["loss"])
        console.print(f"[green]resumed from {state['path']} (step {step})[/green]")
    logger = MetricsLogger(out_dir, info.is_main, tc.tensorboard, console, resume_step=step or None)
    last = {}
    extra = (lambda: {"loss": loss_fn.state_dict()}) if hasattr(loss_fn, "state_dict") else dict
    with StepCheckpoints(trainer, ckpt_root, tc.ckpt_every, console) as ckpt:
        while step < tc.steps:
            t0 = time.perf_counter()
            lr = lr_at(step, peak=tc.lr, total=tc.steps, warmup=tc.warmup_steps, schedule=tc.schedule,
                       min_ratio=tc.min_lr_ratio, decay_fraction=tc.decay_fraction)
            batches = loader.next_step()
            tokens = sum(int(b.input_ids.numel()) for b in batches)
            stats = trainer.step(batches, loss_fn, lr)
            step += 1
            done = step == tc.steps
            last = {"step": step, "loss": stats.loss, **{k: v for k, v in stats.parts.items() if k != loss_fn.log_key},
                    "lr": lr, "grad_norm": stats.grad_norm, "tokens_per_s": tokens * info.dp_size / (time.perf_counter() - t0),
                    "skipped": stats.skip_reason is not None, "skip_reason": stats.skip_reason}
            logger.log(last, print_line=step % tc.log_every == 0 or done)
            if ckpt.after_step(step, done, lambda: {"loader": loader.state_dict(), **extra()}):
                break
    logger.close()
    return LoopResult(step, trainer.spike.skipped, last, ckpt.interrupted, time.perf_counter() - began)
