"""Parallelism applied from outside the model (torchtitan's split; InternEvo in PAPERS.md section 2).

`init_distributed` joins the process group that `torchrun` describes (gloo on CPU, NCCL on GPU);
`parallelize` wraps a plain InternLM2 in activation checkpointing, torch.compile and FSDP2
(`fully_shard` per transformer block, then the root) over a one-dimensional device mesh. The model
code itself never imports torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=device if cuda else None)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def all_reduce_sum(x: float | int, info: DistInfo) -> float:
    if not info.distributed:
        return float(x)
    t = torch.tensor([float(x)], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def apply_activation_checkpointing(model: torch.nn.Module, mode: str, every: int = 1) -> None:
    """"blocks": recompute every `every`-th whole block in backward; "attention": recompute only the
    attention sub-layers (InternEvo's selective checkpointing keeps the cheap-to-store parts)."""
    if mode == "none":
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(model.layers):
        if mode == "blocks" and i % every == 0:
            model.layers[i] = checkpoint_wrapper(block)
        elif mode == "attention":
            block.attention = checkpoint_wrapper(block.attention)


def parallelize(model: torch.nn.Module, info: DistInfo, *, activation_checkpointing: str = "none",
                ac_every: int = 1, compile: bool = False, param_dtype: torch.dtype | None = None
                ) -> torch.nn.Module:
    apply_activation_checkpointing(model, activation_checkpointing, ac_every)
    if compile:
        for block in model.layers:
            block.compile()  # in place: parameter names (and so checkpoints) stay the same
    if info.distributed:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
        for block in model.layers:
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
    return model
