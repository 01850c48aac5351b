"""Worker for tests/train/test_seqpar_reward_loss.py: a reward model's loss under 2D sequence parallelism.

`RewardLoss` reads one reward token per sequence at `Batch.seq_ends`, flat positions in the whole
rows, which stay global when the trainer shards the rows; the sequence-parallel wiring reads each
end on the rank that holds it and all-reduces them (`lmforge.train.seqpar.ends`). The reward model
is the tiny model of `seqpar_train_worker` with a score head, on reward-model rows packed as
`lmforge.align.pair_rows.reward_batch` packs them (reward tokens on every rank of both layouts).
Each process computes the one-process loss, logged parts and gradients first, then those of
head 1 x context 2 and head 2 x context 1 over 2 gloo processes, for the Bradley-Terry and the COOL
loss; rank 0 writes the largest difference per case.
"""

from __future__ import annotations

import torch

from lmforge.align.losses import RewardLoss
from lmforge.align.pair_rows import reward_batch
from lmforge.align.reward import RewardModel
from lmforge.train.parallel import DistInfo
from lmforge.train.trainer import Trainer
from tests.train.seqpar_train_worker import (SEQ_LEN, TINY, fresh_model, gloo_group, layout_info, loss_and_grads,
                                             one_thread, train_section, write_report)

LAYOUTS = ((1, 2), (2, 1))
KINDS = ("bt", "cool")
LENGTHS = ((5, 9), (3, 12), (14, 2), (7, 6))  # (chosen, rejected) tokens: two rows of 32, four pairs each


def pairs_batch():
    """Four (chosen, rejected) pairs of random tokens packed into two rows of SEQ_LEN tokens."""
    gen = torch.Generator().manual_seed(11)
    pairs = [tuple(torch.randint(1, TINY.vocab_size, (n,), generator=gen).tolist() for n in pair) for pair in LENGTHS]
    return reward_batch(pairs, pad_id=0, seq_len=SEQ_LEN)


def reward_model() -> RewardModel:
    rm = RewardModel.from_lm(fresh_model())
    with torch.no_grad():  # rewards of order 1, so that every part of the losses matters
        rm.score.weight.copy_(torch.randn(rm.score.weight.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
    return rm


def run(rank: int, world: int, store: str, report: str) -> None:
    one_thread()
    batch = pairs_batch()
    reference = {kind: loss_and_grads(Trainer(reward_model(), train_section(), DistInfo()), batch, RewardLoss(kind))
                 for kind in KINDS}
    with gloo_group(rank, world, store):
        lines = []
        for head, context in LAYOUTS:
            info = layout_info(rank, world, 1, head, context)
            for kind in KINDS:
                ref_loss, ref_parts, ref_grads = reference[kind]
                trainer = Trainer(reward_model(), train_section(head, context), info)
                loss, parts, grads = loss_and_grads(trainer, batch, RewardLoss(kind))
                loss_err = abs(loss - ref_loss)
                parts_err = max(abs(parts[k] - v) for k, v in ref_parts.items())
                grad_err = max((grads[k] - g).abs().max().item() for k, g in ref_grads.items())
                err = max(loss_err, parts_err, grad_err)
                lines.append(f"head={head} context={context} kind={kind} loss={loss:.6f} reference={ref_loss:.6f} "
                             f"loss_error={loss_err:.3e} parts_error={parts_err:.3e} grad_error={grad_err:.3e} "
                             f"error={err:.3e}")
        write_report(rank, report, lines)
