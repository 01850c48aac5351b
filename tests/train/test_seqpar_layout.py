"""2D sequence parallelism without processes: token layout, the double-ring schedule, size checks
and their messages, one-process attention against SDPA, and the cost model's formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.model.config import ModelConfig
from lmforge.train.parallel import ParallelDims
from lmforge.train.seqpar import (SequenceParallelGroups, check_heads, check_seq_len, cost_table, factor_world,
                                  seqpar_cost, sequence_parallel_attention, shard_sequence, token_indices)
from lmforge.train.seqpar.blocks import attention_mask, block_forward, merge
from lmforge.train.seqpar.layout import check_window, zigzag_indices
from lmforge.train.seqpar.mesh import coordinates, mesh_layout
from lmforge.train.seqpar.ringcomm import Ring


@pytest.mark.parametrize("head, context", [(1, 1), (1, 4), (2, 2), (4, 1), (2, 4), (3, 2)])
def test_every_token_is_held_once_in_zigzag_chunks(head, context):
    T = 4 * context * math.lcm(2, head)
    held = torch.cat([token_indices(T, head, context, h, c) for c in range(context) for h in range(head)])
    assert sorted(held.tolist()) == list(range(T))
    chunk = T // (2 * context)
    for c in range(context):
        chunks = set((zigzag_indices(T, context, c) // chunk).tolist())
        assert chunks == {c, 2 * context - 1 - c}
        # the head group's pieces, concatenated in head order, are the context rank's tokens
        pieces = torch.cat([token_indices(T, head, context, h, c) for h in range(head)])
        assert torch.equal(pieces, zigzag_indices(T, context, c))


def test_shard_sequence_takes_the_rank_tokens():
    x = torch.arange(2 * 16).view(2, 16)
    assert shard_sequence(x, 1, 2, 0, 0).tolist() == [[0, 1, 2, 3, 12, 13, 14, 15], [16, 17, 18, 19, 28, 29, 30, 31]]
    assert shard_sequence(x, 2, 2, 1, 0).tolist() == [[12, 13, 14, 15], [28, 29, 30, 31]]


@pytest.mark.parametrize("context", [1, 2, 4, 8])
def test_double_ring_schedule_visits_every_block_once(context):
    for window in (w for w in range(1, context + 1) if context % w == 0):
        rings = [Ring(tuple(range(context)), r, window) for r in range(context)]
        steps = [(o, j) for o in range(context // window) for j in range(window)]
        for ring in rings:
            assert sorted(ring.source(o, j) for o, j in steps) == list(range(context))
        for ring in rings:  # the block held next is the one the sending peer holds now
            inner_prev, outer_prev = rings[ring.inner_peers()[1]], rings[ring.outer_peers()[1]]
            for o, j in steps:
                if j + 1 < window:
                    assert ring.source(o, j + 1) == inner_prev.source(o, j)
                elif o + 1 < context // window:
                    assert ring.source(o + 1, 0) == outer_prev.source(o, 0)


@pytest.mark.parametrize("placement, expected", [
    ("head_first", [(0, 0), (1, 0), (0, 1), (1, 1)]),
    ("context_first", [(0, 0), (0, 1), (1, 0), (1, 1)]),
])
def test_placement_puts_a_group_on_consecutive_ranks(placement, expected):
    assert [coordinates(r, 2, 2, placement) for r in range(4)] == expected


def test_bad_sizes_name_the_numbers_and_a_fix():
    with pytest.raises(ValueError, match=r"sequence length 100 .* multiple of 8 .* seq_len=96 or 104"):
        check_seq_len(100, 2, 4)
    with pytest.raises(ValueError, match=r"n_heads=6 is not divisible by head_size=4: use head_size in \[1, 2, 3, 6\]"):
        check_heads(6, 2, 4)
    with pytest.raises(ValueError, match=r"world size 6 does not factor .*head x context = 4.*\[1, 2, 3, 6\]"):
        factor_world(6, 2, 2)
    assert factor_world(8, 2, 2) == 2
    with pytest.raises(ValueError, match=r"double_ring_window=3 does not divide context_size=4: use one of \[1, 2, 4"):
        check_window(4, 3)
    with pytest.raises(ValueError, match="placement 'diagonal'"):
        mesh_layout("diagonal")
    q = torch.zeros(1, 4, 8, 2)
    with pytest.raises(ValueError, match="document_ids hold 4 tokens per row"):
        sequence_parallel_attention(q, q, q, torch.zeros(1, 4, dtype=torch.long), SequenceParallelGroups())


def _sdpa(q, k, v, ids):
    T = q.shape[2]
    allowed = attention_mask(torch.arange(T), torch.arange(T), ids)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None], enable_gqa=q.shape[1] != k.shape[1])


def test_one_process_matches_sdpa_with_gradients():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 10, 8, generator=gen, requires_grad=True)
    k, v = (torch.randn(2, 2, 10, 8, generator=gen, requires_grad=True) for _ in range(2))
    ids = torch.tensor([[0] * 3 + [1] * 7, [0] * 6 + [1] * 4])
    out = sequence_parallel_attention(q, k, v, ids, SequenceParallelGroups())
    ref = _sdpa(q, k, v, ids)
    assert (out - ref).abs().max() <= 1e-6
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    refs = torch.autograd.grad(ref.sum(), (q, k, v))
    assert max((a - b).abs().max().item() for a, b in zip(grads, refs)) <= 1e-5


def test_merging_blocks_by_lse_equals_attention_over_all_keys():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 6, 4, generator=gen) for _ in range(3))
    allowed = attention_mask(torch.arange(6), torch.arange(6), None)
    whole, _ = block_forward(q, k, v, allowed, 0.5)
    acc = None
    for keys in (slice(0, 2), slice(2, 6)):  # the second block leaves the first rows with no key
        acc = merge(acc, *block_forward(q, k[:, :, keys], v[:, :, keys], allowed[:, :, keys], 0.5))
    assert (acc[0] - whole).abs().max() <= 1e-6


TINY = ModelConfig(vocab_size=100, dim=64, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=128)


def test_cost_model_formulas():
    one = seqpar_cost(TINY, 1024, ParallelDims(1, 1, 1))
    assert one.comm_bytes == 0
    per_token = (6 * 64 + 2 * 2 * 8 + 3 * 128) * 2 + 8 * 4
    assert one.activation_bytes == 2 * 1024 * per_token
    # head parallel only: all-to-all, 4 kv heads after replication (lcm(2, 4))
    ulysses = seqpar_cost(TINY, 1024, ParallelDims(1, 4, 1))
    assert ulysses.activation_bytes == one.activation_bytes // 4
    assert ulysses.ring_inner_bytes == ulysses.ring_outer_bytes == 0
    assert ulysses.all_to_all_bytes == 2 * 2 * 3 * 256 * 8 * (2 * 8 + 2 * 4) // 4 * 2
    # plain ring over 4: kv block 2 x 256 tokens x 2 heads x 8; 3 + 3 kv sends, 4 float32 gradient sends
    ring = seqpar_cost(TINY, 1024, ParallelDims(1, 1, 4))
    block = 2 * 256 * 2 * 8
    assert ring.all_to_all_bytes == ring.ring_outer_bytes == 0
    assert ring.ring_inner_bytes == 2 * block * (6 * 2 + 4 * 4)
    # double ring of windows of 2: kv 2 inner + 1 outer each way; gradients 4 inner + 2 outer
    double = seqpar_cost(TINY, 1024, ParallelDims(1, 1, 4), double_ring_window=2)
    assert double.ring_inner_bytes == 2 * block * (4 * 2 + 4 * 4)
    assert double.ring_outer_bytes == 2 * block * (2 * 2 + 2 * 4)
    blocks = seqpar_cost(TINY, 1024, ParallelDims(1, 1, 4), checkpointing="blocks")
    assert blocks.activation_bytes == 2 * 256 * 64 * 2 + 256 * per_token
    table = cost_table([one, ulysses, ring, double])
    assert "1 x 1 x 4" in table and "comm GiB" in table and len(table.splitlines()) == 5
    with pytest.raises(ValueError, match="n_heads=8 is not divisible by head_size=3"):
        seqpar_cost(TINY, 1024, ParallelDims(1, 3, 1))


def test_seqpar_cost_command_prints_every_split(capsys):
    from lmforge.cli import main

    assert main(["seqpar-cost", "--preset", "tiny", "--seq-len", "4096", "--sp", "8", "--window", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # tiny has 4 heads: head 8 is left out
    assert [line.split()[0:5:2] for line in lines[2:]] == [["1", "1", "8"], ["1", "2", "4"], ["1", "4", "2"]]
    assert main(["seqpar-cost", "--preset", "tiny", "--seq-len", "100"]) == 1
    assert "use a seq_len that is a multiple of 16" in capsys.readouterr().err


@pytest.mark.parametrize("context", [2, 4, 8])
def test_zigzag_balances_the_causal_work(context):
    """Every rank attends 2 chunk pairs per ring step, 3 on its own block: 2C + 1 in all."""
    from lmforge.train.seqpar.ring import chunk_pairs

    T = 4 * context
    for r in range(context):
        ring = Ring(tuple(range(context)), r, context)
        work = {src: sum(n_k // 2 for _, _, n_k, _ in chunk_pairs(ring, src, T, None, "cpu"))
                for src in range(context)}
        assert work == {src: 3 if src == r else 2 for src in range(context)}
