"""Reward and value losses under 2D sequence parallelism.

PPO's critic loss (`ValueLoss`, every masked token) trains under sequence parallelism exactly as
in one process: 2 gloo processes, the ring and the all-to-all (tests/train/seqpar_value_worker.py),
loss and every gradient within 1e-5. A reward model's loss reads one token per sequence
(`Batch.seq_ends`, flat positions of the whole rows), which a shard does not hold: the trainer's
shard refuses such a batch with the way out in the message.
"""

import re

import pytest
import torch
import torch.multiprocessing as mp

from lmforge.train.seqpar import SequenceParallelGroups, shard_batch
from tests.train import seqpar_value_worker as worker

TOLERANCE = 1e-5


def test_value_loss_under_sequence_parallelism_equals_one_process(tmp_path):
    report = tmp_path / "report.txt"
    mp.spawn(worker.run, args=(2, str(tmp_path / "store"), str(report)), nprocs=2, join=True)
    lines = report.read_text().splitlines()
    print("\n".join(lines))
    assert len(lines) == len(worker.LAYOUTS)
    for line in lines:
        assert float(re.search(r"error=(\S+)", line).group(1)) <= TOLERANCE, line


def test_reward_batch_refuses_to_shard():
    batch = worker.critic_batch()
    batch.seq_ends = torch.tensor([10, 40])
    with pytest.raises(ValueError, match=r"reward models \(RewardLoss\) with head = context = 1"):
        shard_batch(batch, SequenceParallelGroups())
