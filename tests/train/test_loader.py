"""The packed loader: boundaries, determinism, rank sharding, state, and bad shards."""

import json

import numpy as np
import pytest

from lmforge.model.loss import IGNORE_INDEX
from lmforge.shards import ShardError, write_shard
from lmforge.train.loader import PackedLoader


def _loader(root, tok, **kw):
    args = dict(vocab_size=tok.vocab_size, seq_len=64, global_batch=8, micro_batch=2)
    args.update(kw)
    return PackedLoader(root / "train", **args)


def test_rows_are_packed_with_boundaries(dataset):
    root, tok = dataset
    loader = _loader(root, tok)
    boundaries = 0
    for _ in range(4):
        for batch in loader.next_step():
            assert batch.input_ids.shape == batch.targets.shape == batch.document_ids.shape == (2, 64)
            starts = batch.input_ids[:, 1:] == tok.bos_id  # a new document inside the row
            boundaries += int(starts.sum())
            # The token before a BOS is the end of another document: nothing to predict there.
            assert (batch.targets[:, :-1][starts] == IGNORE_INDEX).all()
            assert (batch.document_ids[:, 1:][starts] != batch.document_ids[:, :-1][starts]).all()
            # Inside a document the target is the next input token.
            same = batch.document_ids[:, 1:] == batch.document_ids[:, :-1]
            assert (batch.targets[:, :-1][same] == batch.input_ids[:, 1:][same]).all()
            assert ((batch.targets[:, :-1] == IGNORE_INDEX) == ~same).all()
    assert boundaries > 0, "rows should contain document starts"


def test_order_is_seeded(dataset):
    root, tok = dataset
    a = _loader(root, tok, seed=1).next_step()[0].input_ids
    b = _loader(root, tok, seed=1).next_step()[0].input_ids
    c = _loader(root, tok, seed=2).next_step()[0].input_ids
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_ranks_split_the_global_batch_without_overlap(dataset):
    root, tok = dataset
    single = np.concatenate([b.input_ids for b in _loader(root, tok).next_step()])
    parts = [np.concatenate([b.input_ids for b in _loader(root, tok, rank=r, world_size=2).next_step()])
             for r in range(2)]
    assert np.array_equal(single, np.concatenate(parts))


def test_state_dict_resumes_the_sequence(dataset):
    root, tok = dataset
    a = _loader(root, tok)
    for _ in range(3):
        a.next_step()
    b = _loader(root, tok)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.next_step()[0].input_ids, b.next_step()[0].input_ids)


def test_epochs_wrap(dataset):
    root, tok = dataset
    loader = _loader(root, tok, global_batch=64, micro_batch=64)
    steps = loader.rows_per_epoch // 64 + 1
    for _ in range(steps):
        loader.next_step()
    assert loader.epoch == 1


def test_bad_inputs_fail_before_training(dataset, tmp_path):
    root, tok = dataset
    with pytest.raises(ShardError, match="no such shard directory"):
        PackedLoader(tmp_path / "nope", tok.vocab_size, 64, 8, 2)
    with pytest.raises(ValueError, match="global_batch=6 must be a multiple of micro_batch x data-parallel processes = 2 x 2"):
        _loader(root, tok, global_batch=6, world_size=2)
    write_shard(tmp_path / "big", "s", [[1, 2, 3] * 100], vocab_size=5000)
    with pytest.raises(ShardError, match="vocabulary of 5000 tokens"):
        PackedLoader(tmp_path / "big", tok.vocab_size, 64, 2, 2)
    write_shard(tmp_path / "typed", "s", [[1, 2, 3] * 100], vocab_size=100)
    header = json.loads((tmp_path / "typed" / "s.json").read_text())
    header["dtype"] = "uint32"  # the .bin holds uint16
    (tmp_path / "typed" / "s.json").write_text(json.dumps(header))
    with pytest.raises(ShardError, match="another dtype"):
        PackedLoader(tmp_path / "typed", tok.vocab_size, 16, 2, 2)


def test_shuffled_rows_are_the_epoch_s_rows_in_another_order_and_resume_exactly(dataset):
    root, tok = dataset
    plain, shuffled = _loader(root, tok), _loader(root, tok, shuffle_rows=True)
    n = plain.rows_per_epoch
    rows = lambda loader: sorted(tuple(loader.row(0, i)[0]) for i in range(n))  # noqa: E731
    assert rows(shuffled) == rows(plain)  # every window of the epoch once, nothing else
    order = [next(j for j in range(n) if np.array_equal(shuffled.row(0, i)[0], plain.row(0, j)[0]))
             for i in range(8)]
    assert order != list(range(8)) and sorted(order) != order  # not the stream's neighbours
    assert not np.array_equal(shuffled.row(1, 0)[0], shuffled.row(0, 0)[0])  # a new order each epoch
    # processes split the same global rows; a state resumes them; another setting is refused
    single = np.concatenate([b.input_ids for b in _loader(root, tok, shuffle_rows=True).next_step()])
    parts = [np.concatenate([b.input_ids for b in _loader(root, tok, rank=r, world_size=2,
                                                          shuffle_rows=True).next_step()]) for r in range(2)]
    assert np.array_equal(single, np.concatenate(parts))
    for _ in range(3):
        shuffled.next_step()
    state = json.loads(json.dumps(shuffled.state_dict()))
    resumed = _loader(root, tok, shuffle_rows=True)
    resumed.load_state_dict(state)
    assert all(np.array_equal(a.input_ids, b.input_ids) for a, b in zip(shuffled.next_step(), resumed.next_step()))
    with pytest.raises(ValueError, match="shuffle_rows=True but this run has False"):
        _loader(root, tok).load_state_dict(state)
    old = {k: v for k, v in plain.state_dict().items() if k != "shuffle_rows"}  # written before the option
    _loader(root, tok).load_state_dict(old)
