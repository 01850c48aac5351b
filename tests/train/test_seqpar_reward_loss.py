"""A reward model's loss (`RewardLoss`) under 2D sequence parallelism equals one process.

The reward tokens (`Batch.seq_ends`, flat positions in the whole rows) stay global when the
trainer shards the rows, and the sequence-parallel wiring reads each on the rank that holds it
(`lmforge.train.seqpar.ends`). 2 gloo processes, head 1 x context 2 and head 2 x context 1, the
Bradley-Terry and COOL losses (tests/train/seqpar_reward_worker.py): the loss, its logged parts and
every gradient within 1e-5 of one process. What the read refuses: positions outside the whole rows.
"""

import pytest
import torch

from lmforge.train.seqpar import SequenceEnds, SequenceParallelGroups, shard_batch
from tests.train import seqpar_reward_worker as worker
from tests.train.seqpar_train_worker import spawn_errors

TOLERANCE = 1e-5


def test_reward_loss_under_sequence_parallelism_equals_one_process(tmp_path):
    errors = spawn_errors(worker.run, tmp_path, 2)
    assert len(errors) == len(worker.LAYOUTS) * len(worker.KINDS)
    for line, error in errors:
        assert error <= TOLERANCE, line


def test_the_shard_keeps_the_reward_tokens_global():
    batch = worker.pairs_batch()
    assert torch.equal(shard_batch(batch, SequenceParallelGroups()).seq_ends, batch.seq_ends)


def test_ends_outside_the_whole_rows_are_refused():
    hidden = torch.zeros(2, 8, 4)
    assert torch.equal(SequenceEnds(SequenceParallelGroups())(hidden, torch.tensor([3, 15])), hidden[[0, 1], [3, 7]])
    with pytest.raises(ValueError, match=r"flat positions in the whole rows \(2 rows x 8 tokens"):
        SequenceEnds(SequenceParallelGroups())(hidden, torch.tensor([3, 16]))
