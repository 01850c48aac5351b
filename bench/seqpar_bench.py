"""2D sequence parallelism on CPU/gloo: tokens/s and activation memory per process against one
process training the same row (LoongTrain, arXiv 2406.18485; docs/papers.md §5, issue #18).

Each layout (head x context) runs in fresh gloo processes (torch.multiprocessing): the model
(`--preset`, float32) is wrapped by `Trainer` exactly as `lmforge train` wraps it (FSDP2 over all
processes, 2D attention, the trainer's zigzag shard of the row), then trains forward + backward
on one packed row of `--seq-len` tokens (documents of `--doc` tokens). Reported per process: the
median step time, tokens/s of the whole group, the bytes autograd saves for the backward (the
activations, counted by a saved-tensors hook, each storage once) and the peak RSS growth. The
activations should fall ~1/P; on a shared CPU the time does not (P processes share the cores and
gloo copies every message), so the GPU comparison is still to be measured. The attention alone
against PyTorch's `context_parallel` on the same shapes: bench/seqpar_torch_cp_bench.py.

    python bench/seqpar_bench.py [--layouts 1x1 1x2 2x1 2x2 1x4 4x1] [--seq-len 2048] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console

from lmforge.machine import cpu_name
from lmforge.model import InternLM2, preset
from lmforge.train.config import SequenceParallelSection, TrainSection
from lmforge.train.loader import make_batch
from lmforge.train.losses import NextTokenLoss
from lmforge.train.parallel import DistInfo, ParallelDims
from lmforge.train.seqpar import sequence_parallel_mesh
from lmforge.train.trainer import Trainer
from memory import current_rss, peak_rss, reset_peak_rss
from tables import print_table


def packed_row(seq_len: int, doc: int, vocab: int):
    gen = np.random.default_rng(0)
    return gen.integers(0, vocab, seq_len + 1), np.arange(seq_len + 1) // doc


class SavedBytes:
    """Bytes of the tensors autograd saves for the backward, each storage counted once."""

    def __init__(self):
        self.seen, self.bytes = set(), 0

    def pack(self, t: torch.Tensor):
        key = t.untyped_storage().data_ptr()
        if key not in self.seen:
            self.seen.add(key)
            self.bytes += t.untyped_storage().nbytes()
        return t


def worker(rank: int, world: int, head: int, context: int, store: str, out: str, args) -> None:
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    cfg = preset(args.preset).replace(attn_backend="sdpa")
    torch.manual_seed(0)
    model = InternLM2(cfg)
    model.init_weights(seed=0)
    dims = ParallelDims(1, head, context)
    info = DistInfo(rank=rank, world_size=world, local_rank=rank, dims=dims,
                    mesh=sequence_parallel_mesh(dims) if world > 1 else None)
    tc = TrainSection(seq_len=args.seq_len, global_batch=1, micro_batch=1,
                      sequence_parallel=SequenceParallelSection(head, context))
    trainer = Trainer(model.train(), tc, info)
    batch = trainer.local(make_batch([packed_row(args.seq_len, args.doc, cfg.vocab_size)]))
    loss_fn, divisor = NextTokenLoss(), float(args.seq_len)
    times, saved = [], SavedBytes()
    reset_peak_rss()
    base = current_rss()
    for i in range(args.repeats + 1):  # the first step warms up
        if world > 1:
            dist.barrier()
        t = time.perf_counter()
        counting = torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t) if i == 0 else nullcontext()
        with counting:
            loss, _ = loss_fn(trainer.model, batch, divisor)
        loss.backward()
        trainer.optimizer.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    if rank == 0:
        Path(out).write_text(json.dumps({"s": statistics.median(times), "saved": saved.bytes,
                                         "peak": max(peak_rss() - base, 0)}))
    if world > 1:
        dist.destroy_process_group()


def run_layout(head: int, context: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out, world = os.path.join(tmp, "out.json"), head * context
        mp.spawn(worker, args=(world, head, context, os.path.join(tmp, "store"), out, args), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layouts", nargs="+", default=["1x1", "1x2", "2x1", "2x2", "1x4", "4x1"], help="head x context")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--doc", type=int, default=512, help="tokens per packed document")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--markdown", help="also write the table as Markdown here")
    args = p.parse_args()
    console = Console()
    console.print(f"{cpu_name()} ({os.cpu_count()} cores); torch {torch.__version__}; {args.preset}, one row of "
                  f"{args.seq_len:,} tokens (documents of {args.doc}), float32, {args.threads} thread(s) per process")
    rows, first = [], None
    for layout in args.layouts:
        head, context = (int(x) for x in layout.split("x"))
        r = run_layout(head, context, args)
        first = first or r
        rows.append((f"{head * context}", f"{head} x {context}", f"{r['s'] * 1e3:,.0f}",
                     f"{args.seq_len / r['s']:,.0f}", f"{r['saved'] / 2**20:,.1f}",
                     f"{r['saved'] / first['saved']:.2f}", f"{r['peak'] / 2**20:,.0f}"))
    cols = ("P", "head x context", "step ms", "tokens/s", "activations MiB/proc", "vs first", "peak RSS MiB/proc")
    print_table(console, "2D sequence parallelism, forward + backward of one row", cols, rows, args.markdown)


if __name__ == "__main__":
    main()
