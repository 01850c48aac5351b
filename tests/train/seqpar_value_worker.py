"""Worker for tests/train/test_seqpar_value_loss.py: PPO's critic loss under 2D sequence parallelism.

`ValueLoss` reads the critic (`RewardModel`, the tiny model of `seqpar_train_worker` with a score
head) at every token of the loss mask, by flat positions it computes from the batch's own mask;
under sequence parallelism the trainer's shard carries this rank's part of the mask and of the
per-token returns, so the positions are the shard's and every rank reads its own tokens. Each
process computes the one-process loss and gradients first, then those of head 1 x context 2 and
head 2 x context 1 over 2 gloo processes; rank 0 writes the largest difference per layout.
"""

from __future__ import annotations

import torch

from lmforge.align.losses import ValueLoss
from lmforge.align.reward import RewardModel
from lmforge.train.loader import make_batch
from lmforge.train.parallel import DistInfo
from lmforge.train.trainer import Trainer
from tests.train.seqpar_train_worker import (fresh_model, gloo_group, layout_info, loss_and_grads, one_thread, rows,
                                             train_section, write_report)

LAYOUTS = ((1, 2), (2, 1))


def critic_batch():
    """The packed rows of `seqpar_train_worker` with a random loss mask and per-token returns."""
    batch = make_batch(rows())
    gen = torch.Generator().manual_seed(3)
    batch.loss_mask = torch.rand(batch.input_ids.shape, generator=gen) > 0.5
    batch.rewards = torch.randn(batch.input_ids.shape, generator=gen)
    return batch


def run(rank: int, world: int, store: str, report: str) -> None:
    one_thread()
    batch = critic_batch()
    ref_loss, _, ref_grads = loss_and_grads(Trainer(RewardModel.from_lm(fresh_model()), train_section(), DistInfo()),
                                            batch, ValueLoss())
    with gloo_group(rank, world, store):
        lines = []
        for head, context in LAYOUTS:
            trainer = Trainer(RewardModel.from_lm(fresh_model()), train_section(head, context),
                              layout_info(rank, world, 1, head, context))
            loss, _, grads = loss_and_grads(trainer, batch, ValueLoss())
            err = max([abs(loss - ref_loss)] + [(grads[k] - g).abs().max().item() for k, g in ref_grads.items()])
            lines.append(f"head={head} context={context} loss={loss:.6f} reference={ref_loss:.6f} error={err:.3e}")
        write_report(rank, report, lines)
