"""Parallelism applied from outside the model (torchtitan's split; InternEvo, LoongTrain).

Papers: InternLM2 report, arXiv 2403.17297 (InternEvo); LoongTrain, arXiv 2406.18485;
docs/papers.md §2, §5.

`init_distributed` joins the process group that `torchrun` describes (gloo on CPU, NCCL on GPU)
and builds one `DeviceMesh` up front whose dimensions are named, as torchtitan's `ParallelDims`
does: `dp` (data parallel), then `head` and `context`, the two dimensions of LoongTrain's 2D
sequence parallelism (`lmforge.train.seqpar`), laid out head-first or context-first. The loader
splits rows over `dp`; the trainer splits each row's tokens over head x context.

`parallelize` wraps a plain InternLM2 in 2D sequence parallelism (each attention layer's core
swapped for the 2D attention, RoPE positions and masks from the whole rows), activation
checkpointing, torch.compile and FSDP2 (`fully_shard` per transformer block, then the root). FSDP2
shards over every process, dp x head x context flattened, as torchtitan does for context
parallelism: every process computes the gradient of its own tokens' share of the loss, and the
exact gradient of a replicated parameter is the sum of them all, which is what FSDP2's
reduce-scatter over all processes computes (no separate all-reduce over the sequence-parallel
group). FSDP2 sums instead of averaging: every loss is divided by the count of the whole global
batch (tokens, pairs), so no process count enters the maths. The model code itself never imports
torch.distributed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lmforge.machine import resolve_device
from lmforge.train.dims import MESH_DIMS, ParallelDims
from lmforge.train.seqpar import SequenceParallelGroups, apply_sequence_parallel, factor_world, sequence_parallel_mesh

__all__ = ["MESH_DIMS", "DistInfo", "ParallelDims", "all_reduce_sum", "barrier", "init_distributed", "parallelize"]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    dims: ParallelDims = ParallelDims()
    mesh: object | None = None  # DeviceMesh with MESH_DIMS; None in a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def dp_rank(self) -> int:
        return self.mesh["dp"].get_local_rank() if self.mesh is not None else 0

    @property
    def dp_size(self) -> int:
        return self.dims.dp

    def dp_group(self):
        return self.mesh["dp"].get_group() if self.mesh is not None else None

    def sequence_parallel_groups(self, double_ring_window: int | None = None) -> SequenceParallelGroups | None:
        """This process's head group and context ring; None without sequence parallelism."""
        if self.dims.sequence_parallel == 1:
            return None
        return SequenceParallelGroups.from_mesh(self.mesh, double_ring_window)


def process_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The device of this process for a `run.device` value ("auto", "cpu", "cuda", "cuda:N"): a GPU
    named without an index is the one `torchrun` gave this process (its LOCAL_RANK)."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(dims: ParallelDims | None = None, device: str = "auto", *, head: int = 1, context: int = 1,
                     placement: str = "head_first") -> DistInfo:
    """Join `torchrun`'s process group and build the device mesh; `dims` default: head x context
    sequence parallel, dp the rest (an error when the processes do not factor so). `placement`:
    "head_first" or "context_first" (which groups hold consecutive ranks). `device` is honoured as
    given ("cpu" trains on the CPU even where a GPU is present)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dims = dims or ParallelDims(factor_world(world, head, context), head, context)
    if dims.world_size != world:
        raise ValueError(f"parallel dimensions dp x head x context = {' x '.join(map(str, dims.sizes))} = "
                         f"{dims.world_size}, but {world} process(es) were started")
    device = process_device(device, local)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    mesh = None
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=device if cuda else None)
        mesh = sequence_parallel_mesh(dims, placement, device.type)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device, dims=dims, mesh=mesh)


def all_reduce_sum(x: float | int, info: DistInfo) -> float:
    """The sum of `x` over every process: each holds a share of the global batch (its dp rank's
    rows; with sequence parallelism, its tokens of them)."""
    if info.world_size == 1:
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


def has_cxx_compiler() -> bool:
    """Whether inductor can compile for a CPU here (it writes and builds C++ kernels)."""
    return bool(shutil.which("g++") or shutil.which("c++"))


def compile_blocks(setting: bool | str, device: torch.device) -> bool:
    """`train.compile` resolved: "auto" compiles where it can run (a GPU, or a CPU with a C++
    compiler); true on a CPU without one is refused, saying what to install."""
    if setting == "auto":
        return device.type != "cpu" or has_cxx_compiler()
    if setting and device.type == "cpu" and not has_cxx_compiler():
        raise RuntimeError("train.compile = true on a CPU needs a C++ compiler (torch.compile's inductor "
                           "writes C++ kernels) and none is on PATH; install one (Debian/Ubuntu: "
                           "apt-get install g++; macOS: xcode-select --install), or set train.compile = \"auto\" "
                           "(compile where possible) or false")
    return bool(setting)


def parallelize(model: torch.nn.Module, info: DistInfo, *, activation_checkpointing: str = "none",
                ac_every: int = 1, compile: bool | str = False, param_dtype: torch.dtype | None = None,
                double_ring_window: int | None = None) -> torch.nn.Module:
    """The model, in place, with 2D sequence parallelism (when head x context > 1), activation
    checkpointing, compiled blocks and FSDP2 over all processes (when there are several)."""
    groups = info.sequence_parallel_groups(double_ring_window)
    # A vision-language model (lmforge.model.vision): checkpointing and compilation apply to its
    # language model's blocks, FSDP2 to every block of both towers.
    decoder = getattr(model, "language_model", model)
    if groups is not None:  # before checkpointing wraps the attention layers
        if decoder is not model:
            raise ValueError("train.sequence_parallel is not supported for a vision-language model yet; "
                             "set head = 1 and context = 1")
        if model.cfg.smear_keys:
            raise ValueError("model.smear_keys with train.sequence_parallel: a smeared key needs the key "
                             "before it, which another process holds at a shard's edge; turn one of them off")
        apply_sequence_parallel(model, groups)
    apply_activation_checkpointing(decoder, activation_checkpointing, ac_every)
    if compile_blocks(compile, info.device):
        for block in decoder.layers:
            block.compile()  # in place: parameter names (and so checkpoints) stay the same
    if info.world_size > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # dp x head x context flattened: gradients summed over every process (see the module docstring).
        mesh = info.mesh["dp"] if groups is None else init_device_mesh(info.device.type, (info.world_size,),
                                                                        mesh_dim_names=("fsdp",))
        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
        blocks = model.blocks() if hasattr(model, "blocks") else list(model.layers)  # after checkpoint wrapping
        for block in blocks:
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        for module in (*blocks, model):  # sum over processes: losses divide by the global count
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no PREMUL_SUM
    return model
