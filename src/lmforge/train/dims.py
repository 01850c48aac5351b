"""How the processes of a training run are arranged: dp x head x context (named mesh dimensions).

Paper: InternLM2 report, arXiv 2403.17297 (InternEvo), and LoongTrain, arXiv 2406.18485
(docs/papers.md §2, §5). `dp` is data parallelism (FSDP2), `head` and `context` the two dimensions
of LoongTrain's 2D sequence parallelism, as torchtitan's `ParallelDims` names them. A small module
of its own because both `lmforge.train.parallel` (which applies the parallelism) and
`lmforge.train.seqpar` (which implements it) need it.
"""

from __future__ import annotations

from dataclasses import dataclass

MESH_DIMS = ("dp", "head", "context")


@dataclass(frozen=True)
class ParallelDims:
    """How the processes are arranged: dp x head x context = the number of processes."""

    dp: int = 1
    head: int = 1
    context: int = 1

    def __post_init__(self) -> None:
        for name in MESH_DIMS:
            if getattr(self, name) < 1:
                raise ValueError(f"parallel dimension {name}={getattr(self, name)} must be >= 1")

    @property
    def world_size(self) -> int:
        return self.dp * self.head * self.context

    @property
    def sequence_parallel(self) -> int:
        """P = head x context: the processes that share every row."""
        return self.head * self.context

    @property
    def sizes(self) -> tuple[int, int, int]:
        return self.dp, self.head, self.context
