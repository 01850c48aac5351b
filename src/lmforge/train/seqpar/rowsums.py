"""Per-row sums over the whole rows when every row is sharded: DPO's and SimPO's answer log-probs.

DPO (Rafailov et al., arXiv 2305.18290, eq. 7) and SimPO (Meng et al., arXiv 2405.14734, eq. 6)
score each answer by the sum of log P(token) over its tokens (SimPO divides by their number).
Under 2D sequence parallelism (LoongTrain, arXiv 2406.18485, section 3; docs/papers.md §5) each
rank holds T / P tokens of every row (`layout.token_indices`), so it can sum only its own. `RowSums`,
set on the model from outside by `apply.apply_sequence_parallel` as `model.row_sums` (the loss reads
it there; a model that holds whole rows has none), adds the per-row sums of every rank: an
all-reduce (sum) over the head group and the context ring, with autograd, so every rank gets the
whole rows' sums and computes the same pair loss.

Gradients, as for the reward models' ends (`ends.py`): the pairs are counted on every rank of the
group, so each rank's loss is the pair loss divided by P; the all-reduce's backward sums the P
ranks' gradients of the whole-row sums, which gives each rank the whole gradient for its own
tokens, and FSDP2's sum over all processes then gives the gradient of one process. Only B x k
numbers travel.
"""

from __future__ import annotations

import torch

from lmforge.train.seqpar.attention2d import SequenceParallelGroups
from lmforge.train.seqpar.ends import sum_over_group


class RowSums:
    """(sums (B, k) over this rank's tokens of each row, *sources: the tensors they were computed
    from) -> the sums over the whole rows (B, k) fp32, the same on every rank of the group."""

    def __init__(self, groups: SequenceParallelGroups):
        self.groups = groups

    def __call__(self, sums: torch.Tensor, *sources: torch.Tensor) -> torch.Tensor:
        # A rank may hold none of the summed tokens (a long prompt's first chunk): its sums are then
        # constants. The empty sums of the sources (exactly 0; pass the hidden states and the head's
        # weight) keep them in its graph, so that it takes part in the backward's collectives like the
        # others (this all-reduce's, FSDP2's reduce of the head's gradient) instead of leaving them waiting.
        anchor = sum((s.reshape(-1)[:0].sum().float() for s in sources), torch.zeros((), device=sums.device))
        return sum_over_group(sums.float() + anchor, self.groups)
