"""The model's one forward: token ids or embeddings, positions from the caller, a loss callable, and
KV caches with one length per row (chunked prefill, rows leaving the batch)."""

import pytest
import torch

from lmforge.generate.kv_cache import KVCache
from lmforge.model.loss import linear_lm_loss
from tests.helpers import tiny_model


def _ids(model, B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, model.cfg.vocab_size, (B, T), generator=g)


@torch.no_grad()
def test_inputs_embeds_equal_token_ids():
    model = tiny_model(seed=1)
    ids = _ids(model, 2, 12)
    torch.testing.assert_close(model(inputs_embeds=model.tok_embeddings(ids)), model(ids), rtol=0, atol=0)


@torch.no_grad()
def test_positions_from_the_caller():
    model = tiny_model(seed=2)  # window 32, dynamic NTK
    ids = _ids(model, 1, 20)
    default = model(ids)
    given = model(ids, position_ids=torch.arange(20)[None])
    torch.testing.assert_close(given, default, rtol=0, atol=0)
    # Global offsets, as a rank holding the second half of a split sequence gets them: RoPE is
    # relative, so inside the window the offset changes nothing but rounding...
    shifted = model(ids, position_ids=torch.arange(20)[None] + 10, rope_len=30)
    torch.testing.assert_close(shifted, default, rtol=1e-4, atol=1e-4)
    # ...while the length that sets the dynamic-NTK base is the caller's to give.
    longer = model(ids, position_ids=torch.arange(20)[None] + 10, rope_len=200)
    assert not torch.allclose(longer, default, atol=1e-3)


def test_loss_callable_gets_hidden_states_and_head():
    model = tiny_model(seed=3)
    ids = _ids(model, 2, 10)
    targets = _ids(model, 2, 10, seed=1)
    seen = {}

    def loss_fn(hidden, head_weight):
        seen["shapes"] = (tuple(hidden.shape), tuple(head_weight.shape))
        return linear_lm_loss(hidden, head_weight, targets)

    loss, _ = model(ids, loss_fn=loss_fn)
    assert seen["shapes"] == ((2, 10, model.cfg.dim), (model.cfg.vocab_size, model.cfg.dim))
    ref, _ = model(ids, targets=targets)
    torch.testing.assert_close(loss, ref)


@torch.no_grad()
def test_chunked_prefill_of_rows_with_different_lengths():
    # Two right-padded chunks per row: the second starts at a different length in each row, so the
    # cache writes each row at its own slots. Logits equal a forward over each whole row.
    model = tiny_model(seed=4)
    first = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    second = [[20, 21], [22], [23, 24, 25, 26]]
    cache = KVCache(model.cfg, 3, 20)
    for chunk in (first, second):
        width = max(map(len, chunk))
        ids = torch.tensor([c + [0] * (width - len(c)) for c in chunk])
        mask = torch.tensor([[True] * len(c) + [False] * (width - len(c)) for c in chunk])
        hidden = model.forward_hidden(ids, kv_cache=cache, padding_mask=mask)
    assert cache.row_lengths == [5, 7, 5]
    for b in range(3):
        whole = torch.tensor([first[b] + second[b]])
        ref = model(whole)[0, -1]
        got = model.logits(hidden[b, len(second[b]) - 1])
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_prefill_beyond_the_window_equals_a_full_forward():
    # A 40-token prompt past the 32-token window: the cache sets the dynamic-NTK base from the
    # length the pass reaches, as a full forward over the same tokens does. (Later tokens differ
    # from a full forward by design: as in transformers, a key is rotated once, with the base of the
    # length when it entered the cache.)
    model = tiny_model(seed=7)
    ids = _ids(model, 2, 40)
    cache = KVCache(model.cfg, 2, 48)
    torch.testing.assert_close(model(ids, kv_cache=cache), model(ids), rtol=1e-5, atol=1e-5)
    # Rows of 40 and 35 real tokens: one base for the batch, the longest row's.
    ragged = KVCache(model.cfg, 2, 48)
    mask = torch.arange(40)[None] < torch.tensor([[40], [35]])
    got = model(ids, kv_cache=ragged, padding_mask=mask)
    torch.testing.assert_close(got[1, :35], model(ids[1:, :35], rope_len=40)[0], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_rows_leave_the_batch():
    model = tiny_model(seed=5)
    ids = _ids(model, 3, 6)
    cache = KVCache(model.cfg, 3, 10)
    model.forward_hidden(ids, kv_cache=cache)
    cache.keep_rows([2, 0])
    nxt = torch.tensor([[7], [8]])
    got = model(nxt, kv_cache=cache)[:, -1]
    for row, b in enumerate((2, 0)):
        ref = model(torch.cat([ids[b:b + 1], nxt[row:row + 1]], 1))[0, -1]
        torch.testing.assert_close(got[row], ref, rtol=1e-5, atol=1e-5)
    assert cache.row_lengths == [7, 7]


def test_left_padding_is_refused():
    model = tiny_model(seed=6)
    cache = KVCache(model.cfg, 2, 10)
    mask = torch.tensor([[False, True, True], [True, True, True]])
    with pytest.raises(ValueError, match="right padding"):
        model.forward_hidden(_ids(model, 2, 3), kv_cache=cache, padding_mask=mask)
