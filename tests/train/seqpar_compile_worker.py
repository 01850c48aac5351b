"""Worker for tests/train/test_seqpar_compile_bf16.py: compiled blocks and bfloat16 under 2D
sequence parallelism, 2 gloo processes, the tiny model of `seqpar_train_worker`.

The reference is one process training the whole rows (float32, not compiled). Each case builds
the model under `Trainer` with sequence parallelism (head 1 x context 2: the ring; head 2 x
context 1: the all-to-all) and either `compile = true` (every block `torch.compile`d, the ring
attention inside them) or `dtype = "bfloat16"` (FSDP2 computes in bf16, float32 master weights);
it runs the same forward/backward and `Trainer.step` (`seqpar_train_worker.one_step`). Rank 0
writes one JSON line per case: the largest difference from the reference of the loss, the
gradient norm, every gradient and the weights after AdamW (`error`), the loss's difference
relative to it (`loss_rel`), the largest gradient difference (`grad_abs`) and that relative to
the largest reference gradient (`grad_rel`), and how many times the ring attention ran its forward (`ring_calls`).
"""

from __future__ import annotations

import dataclasses
import json
import os

import torch
import torch.distributed as dist

from lmforge.train.loader import make_batch
from lmforge.train.parallel import DistInfo, ParallelDims
from lmforge.train.seqpar import sequence_parallel_mesh
from lmforge.train.trainer import Trainer
from tests.train.seqpar_train_worker import compare, fresh_model, one_step, rows, train_section

# (name, head, context, TrainSection changes)
CASES = [
    ("compile", 1, 2, {"compile": True}),
    ("compile", 2, 1, {"compile": True}),
    ("bfloat16", 1, 2, {"dtype": "bfloat16"}),
    ("bfloat16", 2, 1, {"dtype": "bfloat16"}),
]


def run(rank: int, world: int, store: str, report: str, names: tuple[str, ...]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    batches = [make_batch([r]) for r in rows()]
    ref = one_step(Trainer(fresh_model(), train_section(), DistInfo()), batches)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        lines = []
        for name, head, context, changes in (c for c in CASES if c[0] in names):
            dims = ParallelDims(1, head, context)
            info = DistInfo(rank=rank, world_size=world, local_rank=rank, dims=dims,
                            mesh=sequence_parallel_mesh(dims))
            tc = dataclasses.replace(train_section(head, context), **changes)
            torch._dynamo.reset()
            got = one_step(Trainer(fresh_model(), tc, info), batches)
            scale = max(g.abs().max().item() for g in ref["grads"].values())
            grad_abs = max((got["grads"][k] - g).abs().max().item() for k, g in ref["grads"].items())
            lines.append(json.dumps({"case": f"{name} head={head} context={context}", "error": compare(got, ref),
                                     "loss_rel": abs(got["loss"] - ref["loss"]) / abs(ref["loss"]),
                                     "grad_abs": grad_abs, "grad_rel": grad_abs / scale,
                                     "ring_calls": got["ring_calls"]}))
        if rank == 0:
            with open(report, "w") as f:
                f.write("\n".join(lines) + "\n")
    finally:
        dist.destroy_process_group()
