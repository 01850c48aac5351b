"""Worker for tests/align/test_seqpar_stages.py: the sft, rm and dpo stages under 2D sequence parallelism.

Each process joins a gloo group through a file store, sets the variables `torchrun` would
(WORLD_SIZE, RANK, LOCAL_RANK) and runs `lmforge.align.sft.sft`, `lmforge.align.rm.rm` and
`lmforge.align.dpo.dpo` with the sections of `sections(...)`, as the commands under torchrun do; `setup` arranges
the processes as dp x head x context from the sections' `sequence_parallel`. The caller compares
the metrics.jsonl losses they write with one process's.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from lmforge.align.config import DPOSection, RMSection, SFTSection
from lmforge.train.config import SequenceParallelSection
from tests.train.seqpar_train_worker import gloo_group, one_thread

SHARED = dict(steps=2, global_batch=4, micro_batch=2, train_examples=24, eval_examples=4, max_new_tokens=2,
              tensorboard=False, log_every=1)


def sections(tiny_dir: str, head: int = 1, context: int = 1) -> tuple[SFTSection, RMSection, DPOSection]:
    sp = SequenceParallelSection(head, context)
    return (SFTSection(init_from=tiny_dir, seq_len=64, sequence_parallel=sp, **SHARED),
            RMSection(init_from=tiny_dir, seq_len=128, ensemble=1, sequence_parallel=sp, **SHARED),
            DPOSection(init_from=tiny_dir, seq_len=64, sequence_parallel=sp, **SHARED))


def run_stages(out: Path, tiny_dir: str, head: int = 1, context: int = 1) -> None:
    from lmforge.align.dpo import dpo
    from lmforge.align.rm import rm
    from lmforge.align.sft import sft

    sft_cfg, rm_cfg, dpo_cfg = sections(tiny_dir, head, context)
    quiet = Console(quiet=True)
    sft(sft_cfg, out / "sft", resume=False, console=quiet, device="cpu")
    rm(rm_cfg, out / "rm", resume=False, console=quiet, device="cpu")
    dpo(dpo_cfg, out / "dpo", resume=False, console=quiet, device="cpu")


def run(rank: int, world: int, store: str, out: str, tiny_dir: str, head: int, context: int) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    one_thread()
    with gloo_group(rank, world, store):
        run_stages(Path(out), tiny_dir, head, context)
