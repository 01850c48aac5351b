"""2D sequence parallelism applied to a plain InternLM2 from outside, as FSDP2 is.

LoongTrain, arXiv 2406.18485, section 3 (docs/papers.md §5). The model is left as it is; these
things change around it:
- each attention layer's core (`Attention.core`, `attend` by default) becomes a
  `SequenceParallelCore`: `sequence_parallel_attention` of this rank's shard over the whole rows;
- a forward pre-hook on the model turns the inputs of a shard (its tokens and their document ids,
  as `shard.shard_batch` cut them) into what the layers need: RoPE positions of the tokens within
  their documents, computed on the whole rows and then sharded, the dynamic-NTK length of the
  whole rows, and a `ShardedRows` mask holding the whole rows' document ids for the ring;
- a reward model's read of its sequences' reward tokens (`RewardModel.read_seq_ends`, flat positions
  in the whole rows) becomes `ends.SequenceEnds`: each rank reads the ends it holds and an
  all-reduce over the group gives every rank all of them;
- `model.row_sums`, which DPO's and SimPO's losses read, is set to `rowsums.RowSums`: each rank
  sums the answer log-probs of the tokens it holds per row, and an all-reduce over the group gives
  every rank the whole rows' sums (a model that holds whole rows has no `row_sums`);
- Selective Checkpoint++: the mask also holds, per layer, the ring's output and log-sum-exp of the
  forward (`ring.KeptAttention`). A checkpointed block keeps its inputs, the mask among them, so
  its recompute in the backward finds them and does not run the ring attention again. The mask is
  made anew by every forward and dropped with the block's inputs after its backward.

With compiled blocks (`[train] compile`) the core is left out of the graphs (`torch.compiler.disable`):
each block compiles to its part before and after attention.

Each rank's loss covers its own tokens, divided by the count of the whole global batch; FSDP2
over all processes sums the gradients (`lmforge.train.parallel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lmforge.model.attention import positions_from_documents
from lmforge.train.seqpar.attention2d import SequenceParallelGroups, sequence_parallel_attention
from lmforge.train.seqpar.ends import SequenceEnds
from lmforge.train.seqpar.layout import check_heads, shard_sequence
from lmforge.train.seqpar.ring import KeptAttention
from lmforge.train.seqpar.rowsums import RowSums
from lmforge.train.seqpar.shard import gather_rows


@dataclass(eq=False)
class ShardedRows:
    """The mask every attention layer of one sequence-parallel forward gets."""

    document_ids: torch.Tensor | None  # (B, T): the whole rows' ids; None: one document per row
    kept: dict = field(default_factory=dict)  # SequenceParallelCore -> KeptAttention (Selective Checkpoint++)


class SequenceParallelCore:
    """One layer's attention core: 2D attention of this rank's tokens over the whole rows.
    `keep`: Selective Checkpoint++ (keep the ring's output and lse for a recompute)."""

    def __init__(self, groups: SequenceParallelGroups, keep: bool = True):
        self.groups, self.keep = groups, keep

    # Under `compile = true` (compiled blocks) the core runs eagerly between the block's two graphs:
    # dynamo cannot trace the ring's batch_isend_irecv (it breaks the graph there and again in each
    # of its pieces), and the Selective Checkpoint++ bookkeeping is Python state.
    @torch.compiler.disable
    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: ShardedRows) -> torch.Tensor:
        if not isinstance(mask, ShardedRows):
            raise TypeError("a sequence-parallel attention layer needs the ShardedRows mask of the model's "
                            "forward pre-hook; call the model itself, not forward_hidden")
        kept = mask.kept.setdefault(self, KeptAttention()) if self.keep and torch.is_grad_enabled() else None
        return sequence_parallel_attention(q, k, v, mask.document_ids, self.groups, kept=kept)


def shard_positions(local_document_ids: torch.Tensor | None, batch: int, local_len: int,
                    groups: SequenceParallelGroups
                    ) -> tuple[torch.Tensor, torch.Tensor | int, torch.Tensor | None]:
    """(this shard's RoPE positions, the dynamic-NTK length, the whole rows' document ids), as
    one process would compute them for the whole rows (`InternLM2.forward_hidden`)."""
    h, c = groups.sizes
    if local_document_ids is None:
        seq_len = local_len * h * c
        positions = torch.arange(seq_len).expand(batch, seq_len)
        return shard_sequence(positions, h, c, *groups.ranks), seq_len, None
    rows = gather_rows(local_document_ids, groups)
    positions = positions_from_documents(rows)
    return shard_sequence(positions, h, c, *groups.ranks), positions.max() + 1, rows


def _shard_inputs_hook(groups: SequenceParallelGroups):
    def hook(module, args, kwargs):
        for name in ("kv_cache", "position_ids", "mask"):
            if kwargs.get(name) is not None:
                raise ValueError(f"a sequence-parallel model computes {name} itself from the whole rows; "
                                 "pass only this rank's tokens and document_ids (shard.shard_batch)")
        given = (args[0] if args else None, kwargs.get("input_ids"), kwargs.get("inputs_embeds"))
        tokens = next(t for t in given if t is not None)
        ids = kwargs.pop("document_ids", None)
        positions, rope_len, rows = shard_positions(ids, tokens.shape[0], tokens.shape[1], groups)
        kwargs.update(position_ids=positions.to(tokens.device), rope_len=rope_len, mask=ShardedRows(rows))
        return args, kwargs

    return hook


def apply_sequence_parallel(model: torch.nn.Module, groups: SequenceParallelGroups, keep: bool = True
                            ) -> torch.nn.Module:
    """Swap every attention layer's core for the 2D attention (and a reward model's read of its
    sequence ends for one over the group), set the per-row sums over the group (`row_sums`) and
    register the input hook, in place. The model must be called with this rank's tokens
    (`shard.shard_batch`)."""
    cfg = model.cfg
    check_heads(cfg.n_heads, cfg.n_kv_heads, groups.sizes[0])
    for block in model.layers:
        block.attention.core = SequenceParallelCore(groups, keep)
    if hasattr(model, "read_seq_ends"):  # a reward model (lmforge.align.reward.RewardModel)
        model.read_seq_ends = SequenceEnds(groups)
    model.row_sums = RowSums(groups)  # read by the sequence-level losses (lmforge.align.losses.sequence_logps)
    model.register_forward_pre_hook(_shard_inputs_hook(groups), with_kwargs=True)
    return model
