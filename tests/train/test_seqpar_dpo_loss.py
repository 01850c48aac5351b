"""DPO's and SimPO's losses (`PreferenceLoss`) under 2D sequence parallelism equal one process.

Each rank sums the answer log-probs of the tokens it holds and the model's `row_sums` all-reduces
them over the group (`lmforge.train.seqpar.rowsums`); the reference table is computed the same way
(`lmforge.align.dpo.reference_table`). 2 gloo processes, head 1 x context 2 (rows padded to split)
and head 2 x context 1 (a rank that holds no answer token), both losses
(tests/train/seqpar_dpo_worker.py): the loss, its logged parts and every gradient within 2e-6 of
one process, the reference table within 2e-6 of its largest value. Alone: the padding that makes
rows split changes no log-prob, and `row_sums` keeps a rank without answer tokens in the backward.
"""

import torch

from lmforge.align.dpo import pair_batch
from lmforge.align.losses import PreferenceLoss, reference_logps
from lmforge.align.pair_rows import reward_batch
from lmforge.train.config import SequenceParallelSection
from lmforge.train.seqpar import RowSums, SequenceParallelGroups, pad_rows
from tests.train import seqpar_dpo_worker as worker
from tests.train.seqpar_train_worker import fresh_model, spawn_errors

TOLERANCE = 2e-6


def test_dpo_and_simpo_under_sequence_parallelism_equal_one_process(tmp_path):
    errors = spawn_errors(worker.run, tmp_path, 2)
    assert len(errors) == len(worker.LAYOUTS) * len(worker.LOSSES)
    for line, error in errors:
        assert error <= TOLERANCE, line


def test_padding_rows_to_split_changes_no_log_prob():
    torch.manual_seed(0)
    encoded = worker.pairs()
    whole = pair_batch(encoded, 0, SequenceParallelSection(), torch.randn(len(encoded), 2))
    padded = pair_batch(encoded, 0, SequenceParallelSection(1, 4), whole.ref_logps.view(-1, 2))
    assert whole.input_ids.shape[1] == 22 and padded.input_ids.shape[1] == 24
    assert torch.equal(padded.ref_logps, whole.ref_logps) and torch.equal(padded.loss_mask[:, :22], whole.loss_mask)
    new_document = whole.document_ids.max(1, keepdim=True).values + 1  # 1 after a full row, 2 after padding
    assert not padded.loss_mask[:, 22:].any() and (padded.document_ids[:, 22:] == new_document).all()
    model = fresh_model().eval()
    assert torch.allclose(reference_logps(model, padded), reference_logps(model, whole), atol=1e-5, rtol=0)
    loss = PreferenceLoss("simpo", beta=2.0)
    assert torch.allclose(loss(model, padded, 4.0)[0], loss(model, whole, 4.0)[0], atol=1e-6, rtol=0)


def test_padding_moves_reward_tokens_to_the_longer_rows():
    batch = reward_batch([([1, 2, 3], [4, 5]), ([6, 7, 8, 9], [1])], pad_id=0)  # rows of 4 tokens
    padded = pad_rows(batch, 1, 3)  # multiple of 6
    assert padded.input_ids.shape == (4, 6)
    assert torch.equal(padded.input_ids.reshape(-1)[padded.seq_ends], batch.input_ids.reshape(-1)[batch.seq_ends])
    assert pad_rows(padded, 1, 3) is padded


def test_row_sums_keep_a_rank_without_answer_tokens_in_the_backward():
    hidden, weight = torch.randn(2, 4, 8, requires_grad=True), torch.randn(16, 8, requires_grad=True)
    sums = RowSums(SequenceParallelGroups())(torch.tensor([[1.5, 3.0], [2.0, 0.0]]), hidden, weight)
    assert torch.equal(sums, torch.tensor([[1.5, 3.0], [2.0, 0.0]])) and sums.requires_grad
    sums.sum().backward()
    assert torch.equal(hidden.grad, torch.zeros_like(hidden)) and torch.equal(weight.grad, torch.zeros_like(weight))
