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

import torch

from lmforge.train.loader import make_batch
from lmforge.train.parallel import DistInfo
from lmforge.train.trainer import Trainer
from tests.train.seqpar_train_worker import (compare, fresh_model, gloo_group, layout_info, one_step, one_thread, rows,
                                             train_section, write_report)

# (name, head, context, TrainSection changes)
CASES = [
    ("compile", 1, 2, {"compile": True}),
    ("compile", 2, 1, {"compile": True}),
    ("bfloat16", 1, 2, {"dtype": "bfloat16"}),
    ("bfloat16", 2, 1, {"dtype": "bfloat16"}),
]


def run(rank: int, world: int, store: str, report: str, names: tuple[str, ...]) -> None:
    one_thread()
    batches = [make_batch([r]) for r in rows()]
    ref = one_step(Trainer(fresh_model(), train_section(), DistInfo()), batches)
    with gloo_group(rank, world, store):
        lines = []
        for name, head, context, changes in (c for c in CASES if c[0] in names):
            tc = dataclasses.replace(train_section(head, context), **changes)
            torch._dynamo.reset()
            got = one_step(Trainer(fresh_model(), tc, layout_info(rank, world, 1, head, context)), batches)
            scale = max(g.abs().max().item() for g in ref["grads"].values())
            grad_abs = max((got["grads"][k] - g).abs().max().item() for k, g in ref["grads"].items())
            lines.append(json.dumps({"case": f"{name} head={head} context={context}", "error": compare(got, ref),
                                     "loss_rel": abs(got["loss"] - ref["loss"]) / abs(ref["loss"]),
                                     "grad_abs": grad_abs, "grad_rel": grad_abs / scale,
                                     "ring_calls": got["ring_calls"]}))
        write_report(rank, report, lines)
