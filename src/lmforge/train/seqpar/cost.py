"""Per-device activation memory and sequence-parallel traffic of one training step, on paper.

LoongTrain, arXiv 2406.18485, section 3 (docs/papers.md §5), compares layouts by what each device
sends; the counts below are derived from the algorithms as built here (`ulysses`, `ring`,
`ringcomm`), so they match what this code sends. With N tokens, P = h x c ranks (h head group,
c context ring), B rows, L layers, H query heads of dim d and Hkv' = lcm(Hkv, h) kv heads after
replication, per layer and device:

- head all-to-all: q, k, v go out in one all-to-all and the output comes back in another, each
  rank keeping 1/h of what it holds: (h-1)/h x B N/P d (2H + 2Hkv') elements forward, the same
  again backward (the reverse all-to-alls of the gradients);
- ring: a key/value block is 2 B (N/c) (Hkv'/h) d elements. Forward sends it c-1 times; backward
  sends it c-1 times again and its dk/dv c times (back to its owner). This implementation sends
  dk/dv in float32 (`grad_bytes`). With a double ring of window w the c-1 key/value sends are
  c/w - 1 on the outer ring and (c/w)(w-1) on inner rings; dk/dv: c/w outer (when c/w > 1),
  c inner (when w > 1: each window pass takes a buffer once round its window).

Activation memory (no recomputation, attention that stores out and lse but no T x T scores):
per token and layer the block keeps its input and norm output (2 dim), q, k, v (dim + 2 Hkv d),
the attention output (dim) and lse (H floats), the FFN norm input and output (2 dim) and the
SwiGLU tensors (3 ffn): L x B N/P x that x bytes. "blocks" checkpointing keeps the block inputs
(dim per token per layer) plus one layer's full set, recomputed in backward. 2D-Attention leaves
this N/P split unchanged: it only moves tokens and heads inside attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmforge.model.config import ModelConfig
from lmforge.train.dims import ParallelDims
from lmforge.train.seqpar.layout import check_heads, check_seq_len, check_window, seq_len_multiple

GiB = 2**30


@dataclass(frozen=True)
class SeqParCost:
    dims: ParallelDims
    window: int
    tokens_per_device: int
    activation_bytes: int
    all_to_all_bytes: int
    ring_inner_bytes: int
    ring_outer_bytes: int

    @property
    def comm_bytes(self) -> int:
        return self.all_to_all_bytes + self.ring_inner_bytes + self.ring_outer_bytes


def _activation_elements_per_token_layer(config: ModelConfig) -> tuple[int, int]:
    """(elements in the compute dtype, float32 elements) one block stores per token."""
    kv_dim = 2 * config.n_kv_heads * config.head_dim
    return 6 * config.dim + kv_dim + 3 * config.ffn_dim, config.n_heads


def seqpar_cost(config: ModelConfig, seq_len: int, dims: ParallelDims, *, micro_batch: int = 1,
                double_ring_window: int | None = None, dtype_bytes: int = 2, grad_bytes: int = 4,
                checkpointing: str = "none") -> SeqParCost:
    """What one device of a dp x head x context run stores and sends in one step of `micro_batch`
    rows of `seq_len` tokens (the dp gradient reduction is not counted)."""
    h, c = dims.head, dims.context
    if micro_batch < 1:
        raise ValueError(f"micro_batch={micro_batch} must be >= 1")
    check_heads(config.n_heads, config.n_kv_heads, h)
    check_seq_len(seq_len, h, c)
    w = double_ring_window or c
    check_window(c, w)
    tokens = micro_batch * seq_len // (h * c)
    per_token, per_token_f32 = _activation_elements_per_token_layer(config)
    layer_bytes = tokens * (per_token * dtype_bytes + per_token_f32 * 4)
    if checkpointing == "none":
        activations = config.n_layers * layer_bytes
    elif checkpointing == "blocks":
        activations = config.n_layers * tokens * config.dim * dtype_bytes + layer_bytes
    else:
        raise ValueError(f"checkpointing={checkpointing!r}: expected 'none' or 'blocks'")

    d, L = config.head_dim, config.n_layers
    kv_heads = math.lcm(config.n_kv_heads, h)
    a2a = 2 * (h - 1) * tokens * d * (2 * config.n_heads + 2 * kv_heads) // h * dtype_bytes
    block = 2 * micro_batch * (seq_len // c) * (kv_heads // h) * d
    n_windows = c // w
    kv_inner, kv_outer = n_windows * (w - 1), n_windows - 1
    grad_inner, grad_outer = (c if w > 1 else 0), (n_windows if n_windows > 1 else 0)
    inner = block * (2 * kv_inner * dtype_bytes + grad_inner * grad_bytes)
    outer = block * (2 * kv_outer * dtype_bytes + grad_outer * grad_bytes)
    return SeqParCost(dims, w, tokens, activations, L * a2a, L * inner, L * outer)


def split_costs(config: ModelConfig, seq_len: int, sp_size: int, *, micro_batch: int = 1,
                double_ring_window: int | None = None, dtype_bytes: int = 2) -> list[SeqParCost]:
    """`seqpar_cost` of every head x context = sp_size split that the model's heads and the
    sequence length allow (the double-ring window where it divides the context size)."""
    if sp_size < 1:
        raise ValueError(f"sequence-parallel size {sp_size} must be >= 1")
    if double_ring_window is not None:
        check_window(sp_size, double_ring_window)
    costs = []
    for head in (h for h in range(1, sp_size + 1) if sp_size % h == 0):
        context = sp_size // head
        if config.n_heads % head or seq_len % seq_len_multiple(head, context):
            continue
        window = double_ring_window if double_ring_window and context % double_ring_window == 0 else None
        costs.append(seqpar_cost(config, seq_len, ParallelDims(1, head, context), micro_batch=micro_batch,
                                 double_ring_window=window, dtype_bytes=dtype_bytes))
    if not costs:
        raise ValueError(f"no head x context split of {sp_size} ranks fits n_heads={config.n_heads} and "
                         f"seq_len={seq_len}: use a seq_len that is a multiple of {2 * sp_size}")
    return costs


def cost_table(costs: list[SeqParCost]) -> str:
    """A plain-text table, one row per layout, sizes in GiB."""
    header = ("dp x head x context", "window", "tokens/dev", "activ. GiB", "a2a GiB", "ring in GiB",
              "ring out GiB", "comm GiB")
    rows = [header] + [(" x ".join(map(str, c.dims.sizes)), str(c.window), f"{c.tokens_per_device:,}",
                        *(f"{b / GiB:.2f}" for b in (c.activation_bytes, c.all_to_all_bytes, c.ring_inner_bytes,
                                                      c.ring_outer_bytes, c.comm_bytes))) for c in costs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)
