"""Device placement for 2D sequence parallelism: which ranks form head groups and context rings.

LoongTrain, arXiv 2406.18485, section 3.4 (docs/papers.md §5). The P = head x context ranks of a
sequence-parallel group are consecutive ranks (on one node or a few). "head_first" puts the
ranks of a head group next to each other (inside a node: the all-to-all runs over NVLink, the
ring crosses nodes); "context_first" does the same for a context ring. Both are one DeviceMesh
with the dimensions of `lmforge.train.parallel` (dp, head, context), laid out in a different
order: the innermost dimension is the one whose ranks are consecutive.
"""

from __future__ import annotations

from lmforge.train.dims import MESH_DIMS, ParallelDims

PLACEMENTS = ("head_first", "context_first")


def mesh_layout(placement: str) -> tuple[str, str, str]:
    """Mesh dimension names, outermost first: the last one's ranks are consecutive."""
    if placement == "head_first":
        return "dp", "context", "head"
    if placement == "context_first":
        return MESH_DIMS
    raise ValueError(f"sequence-parallel placement {placement!r}: expected one of {', '.join(PLACEMENTS)}")


def sequence_parallel_mesh(dims: ParallelDims, placement: str = "head_first", device_type: str = "cpu"):
    """A DeviceMesh over all processes with dims named dp, head and context (index it by name:
    mesh["head"], mesh["context"]), head or context innermost as `placement` says."""
    from torch.distributed.device_mesh import init_device_mesh

    names = mesh_layout(placement)
    sizes = {"dp": dims.dp, "head": dims.head, "context": dims.context}
    return init_device_mesh(device_type, tuple(sizes[n] for n in names), mesh_dim_names=names)


def coordinates(sp_rank: int, head_size: int, context_size: int, placement: str) -> tuple[int, int]:
    """(head rank, context rank) of the `sp_rank`-th rank of a sequence-parallel group."""
    inner = mesh_layout(placement)[-1]
    if inner == "head":
        return sp_rank % head_size, sp_rank // head_size
    return sp_rank // context_size, sp_rank % context_size
