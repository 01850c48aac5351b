"""Worker for tests/train/test_seqpar_distributed.py: one gloo process group runs every case.

Every process builds the same full q, k, v (same seed) and the reference: SDPA with an explicit
block-diagonal causal mask, and its gradients for a fixed upstream gradient. It then runs
`sequence_parallel_attention` on its own shard and compares output and dq/dk/dv with the
reference's rows for the tokens it holds.
"""

from __future__ import annotations

import itertools
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lmforge.train.parallel import ParallelDims
from lmforge.train.seqpar import SequenceParallelGroups, sequence_parallel_attention, sequence_parallel_mesh
from lmforge.train.seqpar.layout import token_indices
from lmforge.train.seqpar.mesh import PLACEMENTS, coordinates

N_HEADS, HEAD_DIM, BATCH = 8, 8, 2
TOLERANCE = 1e-5
BF16_TOLERANCE = 1e-2  # bfloat16 keeps 8 bits of mantissa: outputs and gradients round at ~4e-3


def packed_ids(seq_len: int) -> torch.Tensor:
    """Two rows of documents whose boundaries fall inside zigzag chunks."""
    rows = []
    for lengths in ((5, 9, 3), (11, 2)):
        ids = [d for d, n in enumerate(lengths) for _ in range(n)]
        rows.append(ids + [len(lengths)] * (seq_len - len(ids)))
    return torch.tensor(rows)


def reference(seq_len: int, n_kv_heads: int, packed: bool, dtype: torch.dtype = torch.float32):
    """Full inputs (rounded to `dtype`, held in float32), document ids, upstream gradient, and
    SDPA's float32 output and gradients."""
    gen = torch.Generator().manual_seed(1000 * n_kv_heads + seq_len + packed)
    q = torch.randn(BATCH, N_HEADS, seq_len, HEAD_DIM, generator=gen).to(dtype).float()
    k, v = (torch.randn(BATCH, n_kv_heads, seq_len, HEAD_DIM, generator=gen).to(dtype).float() for _ in range(2))
    grad = torch.randn(BATCH, N_HEADS, seq_len, HEAD_DIM, generator=gen)
    ids = packed_ids(seq_len) if packed else None
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()[None]
    if ids is not None:
        allowed = allowed & (ids[:, :, None] == ids[:, None, :])
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*leaves, attn_mask=allowed[:, None], enable_gqa=n_kv_heads != N_HEADS)
    (out * grad).sum().backward()
    return (q, k, v), ids, grad, out.detach(), [t.grad for t in leaves]


def layouts(world: int):
    """(dp, head, context, window) for every split of the world and every double-ring window."""
    for head in (d for d in range(1, world + 1) if world % d == 0):
        for context in (d for d in range(1, world // head + 1) if (world // head) % d == 0):
            for window in (w for w in range(1, context + 1) if context % w == 0):
                yield world // (head * context), head, context, window


def check_case(groups: SequenceParallelGroups, seq_len: int, n_kv_heads: int, packed: bool,
               dtype: torch.dtype = torch.float32) -> float:
    """The largest error of output and gradients, relative to the largest reference value when
    the shard computes in bfloat16 (the reference then starts from the same rounded inputs)."""
    (q, k, v), ids, grad, out_ref, grads_ref = reference(seq_len, n_kv_heads, packed, dtype)
    idx = token_indices(seq_len, *groups.sizes, *groups.ranks)
    local = [t[:, :, idx].to(dtype).requires_grad_() for t in (q, k, v)]
    out = sequence_parallel_attention(*local, ids, groups)
    assert out.dtype == dtype
    (out.float() * grad[:, :, idx]).sum().backward()
    pairs = [(out.detach(), out_ref)] + [(t.grad, g) for t, g in zip(local, grads_ref)]
    scale = 1.0 if dtype == torch.float32 else max(r.abs().max().item() for _, r in pairs)
    return max((a.float() - r[:, :, idx]).abs().max().item() for a, r in pairs) / scale


def run(rank: int, world: int, store: str, seq_len: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        failures = []
        meshes = {}
        for (dp, head, context, window), placement in itertools.product(layouts(world), PLACEMENTS):
            key = (dp, head, context, placement)
            if key not in meshes:
                meshes[key] = sequence_parallel_mesh(ParallelDims(dp, head, context), placement)
            groups = SequenceParallelGroups.from_mesh(meshes[key], window)
            sp = head * context
            assert coordinates(rank % sp, head, context, placement) == groups.ranks
            layout = f"dp={dp} head={head} context={context} window={window} {placement}"
            for n_kv_heads, packed in itertools.product((8, 2, 1), (False, True)):
                err = check_case(groups, seq_len, n_kv_heads, packed)
                if not err <= TOLERANCE:
                    failures.append(f"{layout} kv_heads={n_kv_heads} packed={packed}: max error {err:.3g}")
            err = check_case(groups, seq_len, 2, True, torch.bfloat16)
            if not err <= BF16_TOLERANCE:
                failures.append(f"{layout} bfloat16: max relative error {err:.3g}")
        assert not failures, f"rank {rank}:\n" + "\n".join(failures)
    finally:
        dist.destroy_process_group()
