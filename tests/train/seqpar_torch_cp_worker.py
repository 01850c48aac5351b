"""Worker for tests/train/test_seqpar_torch_cp.py: our ring against PyTorch's context parallelism.

Two gloo processes build the same causal q, k, v (same seed) and an upstream gradient, take their
zigzag shard (context = 2: PyTorch's head-tail layout is the same tokens), and run our ring
(`sequence_parallel_attention`, head group of one), PyTorch's ring functions with the CPU flash
kernels (`torchcp.torch_cp_attention(public=False)`) and, where it runs, PyTorch's public
dispatch. Rank 0 writes the largest differences of output and dq/dk/dv (ours vs PyTorch, each vs
one-process SDPA) and the public path's error, if any, as JSON.
"""

from __future__ import annotations

import json

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lmforge.train.seqpar import SequenceParallelGroups, sequence_parallel_attention
from lmforge.train.seqpar.layout import token_indices
from lmforge.train.seqpar.torchcp import public_api_error, torch_cp_attention
from tests.train.seqpar_train_worker import gloo_group, one_thread

SHAPE = (2, 4, 64, 16)  # B, H, T, D


def _run(attend, q, k, v, grad):
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = attend(*leaves)
    (out * grad).sum().backward()
    return [out.detach()] + [t.grad for t in leaves]


def _diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def run(rank: int, world: int, store: str, out: str) -> None:
    one_thread()
    with gloo_group(rank, world, store):
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cpu", (world,))
        gen = torch.Generator().manual_seed(0)
        q, k, v, grad = (torch.randn(*SHAPE, generator=gen) for _ in range(4))
        ref = _run(lambda *t: F.scaled_dot_product_attention(*t, is_causal=True), q, k, v, grad)
        idx = token_indices(SHAPE[2], 1, world, 0, rank)
        ref = [t[:, :, idx] for t in ref]
        q, k, v, grad = (t[:, :, idx].contiguous() for t in (q, k, v, grad))
        groups = SequenceParallelGroups(None, dist.group.WORLD)
        ours = _run(lambda *t: sequence_parallel_attention(*t, None, groups), q, k, v, grad)
        result = {"ours_vs_sdpa": _diff(ours, ref)}
        for rotate in ("allgather", "alltoall"):
            with torch_cp_attention(mesh, public=False, rotate=rotate) as attend:
                theirs = _run(attend, q, k, v, grad)
            result[f"torch_ring_{rotate}_vs_sdpa"] = _diff(theirs, ref)
            result[f"ours_vs_torch_ring_{rotate}"] = _diff(ours, theirs)
        result["public_error"] = public_api_error(mesh)
        if result["public_error"] is None:
            with torch_cp_attention(mesh, public=True) as attend:
                result["ours_vs_torch_public"] = _diff(ours, _run(attend, q, k, v, grad))
        gathered = [None] * world
        dist.all_gather_object(gathered, result)
        if rank == 0:
            with open(out, "w") as f:
                json.dump(gathered, f)
