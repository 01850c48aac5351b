"""The trainer with pluggable losses: normalised by the items of the global batch (so micro-batches
of any sizes accumulate to the one-batch gradient), a loss mask, and a loss of another kind."""

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmforge.model.loss import IGNORE_INDEX, linear_lm_loss
from lmforge.train import TrainSection, Trainer
from lmforge.train.batch import Batch
from lmforge.train.losses import NextTokenLoss
from lmforge.train.parallel import DistInfo
from tests.helpers import tiny_model


def _batch(model, rows, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.cfg.vocab_size, (rows, T + 1), generator=g)
    targets = ids[:, 1:].clone()
    # Rows with very different numbers of targets: a per-row or per-micro-batch mean would weigh them wrongly.
    for r in range(rows):
        targets[r, : 2 * r + 1] = IGNORE_INDEX
    return Batch(ids[:, :-1], targets, torch.zeros(rows, T, dtype=torch.long))


def _trainer(model, **kw):
    tc = TrainSection(lr=1e-2, warmup_steps=0, weight_decay=0.0, grad_clip=0.0, spike_zscore=0.0, **kw)
    return Trainer(model.train(), tc, DistInfo())


def _recording_gradients(trainer):
    """The gradients each optimizer step sees, recorded in trainer.grads."""
    trainer.grads = []
    step = trainer.optimizer.step

    def recording(*args, **kwargs):
        trainer.grads.append([p.grad.clone() for p in trainer.model.parameters()])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording
    return trainer


def test_micro_batches_of_different_sizes_accumulate_to_the_one_batch_step():
    model = tiny_model(seed=1)
    batch = _batch(model, 5)
    one = _recording_gradients(_trainer(copy.deepcopy(model)))
    two = _recording_gradients(_trainer(copy.deepcopy(model), global_batch=5, micro_batch=1))
    loss = NextTokenLoss()
    a = one.step([batch], loss, lr=1e-2)
    split = [Batch(*(t[i:j] for t in (batch.input_ids, batch.targets, batch.document_ids)))
             for i, j in ((0, 1), (1, 4), (4, 5))]  # 1, 3 and 1 rows
    b = two.step(split, loss, lr=1e-2)
    # The logged loss is the mean over every target token of the global batch...
    with torch.no_grad():
        ref, _ = linear_lm_loss(model.forward_hidden(batch.input_ids), model.head_weight(), batch.targets)
    assert abs(a.loss - float(ref)) < 1e-5 and abs(b.loss - float(ref)) < 1e-5
    # ...and so is the gradient: the same update either way.
    for g, h in zip(one.grads[0], two.grads[0], strict=True):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-7)
    assert abs(a.grad_norm - b.grad_norm) < 1e-5 * a.grad_norm


def test_loss_mask_counts_only_the_masked_in_tokens():
    model = tiny_model(seed=2)
    batch = _batch(model, 3)
    mask = torch.zeros_like(batch.targets, dtype=torch.bool)
    mask[:, 6:] = True  # e.g. the assistant's turn of a chat
    masked = Batch(batch.input_ids, batch.targets, batch.document_ids, loss_mask=mask)
    fn = NextTokenLoss()
    assert fn.count(masked) == int(((batch.targets != IGNORE_INDEX) & mask).sum())
    with torch.no_grad():
        loss, parts = fn(model, masked, divisor=fn.count(masked))
        ref, _ = linear_lm_loss(model.forward_hidden(batch.input_ids), model.head_weight(),
                                batch.targets.masked_fill(~mask, IGNORE_INDEX))
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(parts["ce"], ref)


@dataclass
class LastTokenLoss:
    """A loss of another shape: one item per row (as a reward model's pairs would be), read from the
    last hidden state through the head, inside the model's forward."""

    log_key: str = "nll"

    def count(self, batch):
        return batch.input_ids.shape[0]

    def __call__(self, model, batch, divisor):
        def head(hidden, weight):
            nll = F.cross_entropy(F.linear(hidden[:, -1], weight), batch.targets[:, -1], reduction="sum") / divisor
            return nll, {"nll": nll.detach()}

        return model(batch.input_ids, document_ids=batch.document_ids, loss_fn=head)


def test_a_loss_of_another_kind_plugs_in():
    model = tiny_model(seed=3)
    batch = _batch(model, 4)
    trainer = _trainer(model)
    fn = LastTokenLoss()
    first = trainer.step([batch], fn, lr=1e-2).loss
    for _ in range(20):
        last = trainer.step([batch], fn, lr=1e-2)
    assert set(last.parts) == {"nll"} and last.loss < 0.5 * first
    assert abs(trainer.evaluate([batch], fn) - fn(trainer.model, batch, 4)[1]["nll"].item()) < 1e-5


def test_batch_moves_its_optional_fields():
    b = Batch(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long),
              torch.zeros(2, 3, dtype=torch.long), rewards=torch.ones(2))
    moved = b.to("meta")
    assert moved.input_ids.is_meta and moved.rewards.is_meta and moved.loss_mask is None and moved.pair_ids is None
