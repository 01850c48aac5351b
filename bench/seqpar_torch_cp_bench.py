"""Our zigzag ring attention against PyTorch's context parallelism on the same shapes (issue #18).

Two processes (gloo on CPU, NCCL with `--device cuda`) each hold one head-tail / zigzag shard of a
causal attention (B, H, T, D), context = 2 (PyTorch's layout and ours are the same tokens). Each
implementation runs forward + backward with the same upstream gradient: ours
(`sequence_parallel_attention`), PyTorch's ring with its two key/value rotations ("allgather",
its default, and "alltoall"), and one-process SDPA (whole sequence, each process) for scale.
Reported: the largest difference of output and dq/dk/dv from one-process SDPA and from ours, and
the median step time (slowest rank) of `--repeats` rounds after a warm-up round; a round runs one
step of each ring in turn, so that a shared machine's changing load falls alike on all.

PyTorch's public path (the SDPA patch `context_parallel` installs) dispatches CUDA kernels only;
on a CPU it refuses (the error is printed) and the PyTorch rows run its ring functions with the
CPU flash kernel instead (`lmforge.train.seqpar.torchcp`). On a GPU the rows are the public path.

    python bench/seqpar_torch_cp_bench.py [--seq-len 2048] [--heads 8] [--head-dim 64] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from rich.console import Console

from lmforge.machine import cpu_name
from lmforge.train.seqpar import SequenceParallelGroups, sequence_parallel_attention
from lmforge.train.seqpar.layout import token_indices
from lmforge.train.seqpar.torchcp import public_api_error, torch_cp_attention
from tables import print_table

WORLD = 2


def step(attend, q, k, v, grad, device):
    """One forward + backward: seconds, and (out, dq, dk, dv)."""
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = attend(*leaves)
    out.backward(grad)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, [out.detach()] + [x.grad for x in leaves]


def one_process(q, k, v, grad, device, repeats: int):
    """One-process SDPA of the whole sequence: median of `repeats` steps after a warm-up, results."""
    attend = partial(F.scaled_dot_product_attention, is_causal=True)
    runs = [step(attend, q, k, v, grad, device) for _ in range(repeats + 1)]
    return statistics.median(s for s, _ in runs[1:]), runs[-1][1]


def interleaved(impls: dict, q, k, v, grad, device, repeats: int):
    """`impls`: name -> a context manager yielding `attend`. One step of each in turn per round
    (a shared machine's load drifts alike for all), a warm-up round first; per name the median of
    the slowest rank's step, and its results."""
    times: dict[str, list[float]] = {name: [] for name in impls}
    results = {}
    for i in range(repeats + 1):
        for name, make in impls.items():
            with make() as attend:
                dist.barrier()
                s, results[name] = step(attend, q, k, v, grad, device)
            s_max = torch.tensor([s], device=device)
            dist.all_reduce(s_max, op=dist.ReduceOp.MAX)
            if i:
                times[name].append(s_max.item())
    return {name: statistics.median(t) for name, t in times.items()}, results


def diff(a, b) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


def worker(rank: int, store: str, out: str, args) -> None:
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device, rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}",
                            rank=rank, world_size=WORLD)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (WORLD,))
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.heads, args.seq_len, args.head_dim)
    q, k, v, grad = (torch.randn(*shape, generator=gen).to(device) for _ in range(4))
    sdpa_s, ref = one_process(q, k, v, grad, device, args.repeats)
    idx = token_indices(args.seq_len, 1, WORLD, 0, rank, device)
    ref = [t[:, :, idx] for t in ref]
    q, k, v, grad = (t[:, :, idx].contiguous() for t in (q, k, v, grad))
    public_error = public_api_error(mesh, device)
    groups = SequenceParallelGroups(None, dist.group.WORLD)
    path = "context_parallel" if public_error is None else "_templated_ring_attention + CPU flash"
    ours_name = "lmforge ring (zigzag)"
    impls = {ours_name: lambda: nullcontext(lambda *t: sequence_parallel_attention(*t, None, groups))}
    for rotate in ("allgather", "alltoall"):
        impls[f"torch {path}, {rotate}"] = partial(torch_cp_attention, mesh, public_error is None, rotate)
    times, results = interleaved(impls, q, k, v, grad, device, args.repeats)
    ours = results[ours_name]
    rows = [{"name": "one-process SDPA (whole sequence)", "s": sdpa_s, "vs_sdpa": 0.0, "vs_ours": diff(ref, ours)}]
    rows += [{"name": name, "s": times[name], "vs_sdpa": diff(results[name], ref),
              "vs_ours": diff(results[name], ours)} for name in impls]
    for r in rows:  # the worst rank's difference
        for key in ("vs_sdpa", "vs_ours"):
            t = torch.tensor([r[key]], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            r[key] = t.item()
    if rank == 0:
        Path(out).write_text(json.dumps({"rows": rows, "public_error": public_error}))
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--markdown", help="also write the table as Markdown here")
    args = p.parse_args()
    console = Console()
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu_name()} ({os.cpu_count()} cores)"
    console.print(f"{where}; torch {torch.__version__}; causal B={args.batch} H={args.heads} T={args.seq_len:,} "
                  f"D={args.head_dim}, float32, {WORLD} processes (context 2)")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        mp.spawn(worker, args=(os.path.join(tmp, "store"), out, args), nprocs=WORLD, join=True)
        result = json.loads(Path(out).read_text())
    if result["public_error"]:
        console.print(f"torch context_parallel (public path) refuses here: {result['public_error']}")
    rows = result["rows"]
    ours = rows[1]["s"]
    table = [(r["name"], f"{r['s'] * 1e3:,.1f}", f"{ours / r['s']:.2f}", f"{r['vs_sdpa']:.1e}", f"{r['vs_ours']:.1e}")
             for r in rows]
    cols = ("implementation", "fwd+bwd ms", "lmforge ms / this ms", "max abs diff vs SDPA", "max abs diff vs lmforge")
    print_table(console, "Context-parallel causal attention, 2 ranks", cols, table, args.markdown)


if __name__ == "__main__":
    main()
