"""LoongTrain's 2D sequence parallelism: head parallel x context parallel attention.

Paper: LoongTrain, arXiv 2406.18485 (docs/papers.md §5). The sequence-parallel group of
P = head_size x context_size ranks splits every sequence P ways. Attention runs in two levels:
an all-to-all inside each head group gives every rank all the tokens of its context group for
H / head_size heads (`ulysses`), then ring attention over the context group, zigzag-chunked for
causal balance and optionally as a double ring (`ring`, `ringcomm`); `attention2d` composes the
two, `layout` says which tokens each rank holds and checks the sizes, `mesh` maps ranks to
(head, context) coordinates (head-first or context-first placement), `cost` estimates memory and
traffic (`lmforge seqpar-cost`).

Training wiring: `shard` cuts a batch's rows into this rank's tokens (and gathers the document ids
back), `apply` swaps each attention layer's core of a plain InternLM2 for the 2D attention and adds
a forward pre-hook for RoPE positions and masks of the whole rows, with Selective Checkpoint++ (a
recomputed block reuses the ring's output and lse), and swaps a reward model's read of its reward
tokens for `ends.SequenceEnds` (each rank reads the ends it holds, an all-reduce shares them), and
sets `rowsums.RowSums` for DPO's and SimPO's per-answer sums (each rank sums its tokens of every
row, an all-reduce adds them).
`lmforge.train.parallel.parallelize` applies it when `[train] sequence_parallel` asks for
head x context > 1; docs/sequence_parallel.md.

Like `lmforge.train.parallel`, this is applied from outside the model: it works on the q, k, v
tensors an attention layer computes and on the model's inputs, never on model code.
"""

from lmforge.train.seqpar.apply import SequenceParallelCore, ShardedRows, apply_sequence_parallel
from lmforge.train.seqpar.attention2d import SequenceParallelGroups, sequence_parallel_attention
from lmforge.train.seqpar.cost import SeqParCost, cost_table, seqpar_cost
from lmforge.train.seqpar.ends import SequenceEnds
from lmforge.train.seqpar.layout import (check_heads, check_seq_len, check_window, factor_world, shard_sequence,
                                         token_indices)
from lmforge.train.seqpar.mesh import PLACEMENTS, sequence_parallel_mesh
from lmforge.train.seqpar.ring import KeptAttention
from lmforge.train.seqpar.rowsums import RowSums
from lmforge.train.seqpar.shard import gather_rows, pad_rows, shard_batch

__all__ = [
    "PLACEMENTS", "KeptAttention", "RowSums", "SeqParCost", "SequenceEnds", "SequenceParallelCore",
    "SequenceParallelGroups", "ShardedRows", "apply_sequence_parallel", "check_heads", "check_seq_len", "check_window",
    "cost_table", "factor_world", "gather_rows", "pad_rows", "seqpar_cost", "sequence_parallel_attention",
    "sequence_parallel_mesh", "shard_batch", "shard_sequence", "token_indices",
]
