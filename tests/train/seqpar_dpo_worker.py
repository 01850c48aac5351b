"""Worker for tests/train/test_seqpar_dpo_loss.py: DPO and SimPO under 2D sequence parallelism.

`PreferenceLoss` sums each answer's log-probs (and SimPO counts its tokens) over its whole row; under
sequence parallelism each rank sums the tokens it holds and the model's `row_sums`, set by the
sequence-parallel wiring, adds them over the group (`lmforge.train.seqpar.rowsums`). The policy is
the tiny model of `seqpar_train_worker`; the reference a second tiny model of other weights, so the
margins are of order 1 (a reference equal to the policy would put them at 0, where `acc` flips on
rounding). The pairs share a 12-token prompt, so at head 2 x context 1 the first rank holds no
answer token at all, and their rows (22 tokens) are padded to 24 to split at head 1 x context 2
(`lmforge.align.dpo.pair_batch`). Each process computes, alone, the reference table
(`dpo.reference_table`, two pairs per forward) and the loss, logged parts and gradients of both
losses on the whole rows; then the same over 2 gloo processes at head 1 x context 2 and head 2 x
context 1; rank 0 writes the largest difference per case (the reference table's relative to its
largest value: sums of 5 to 11 log-probs of about -5.5 each).
"""

from __future__ import annotations

import torch

from lmforge.align.chat_rows import Encoded
from lmforge.align.dpo import pair_batch, reference_table
from lmforge.align.losses import PreferenceLoss
from lmforge.model import InternLM2
from lmforge.train.config import SequenceParallelSection
from lmforge.train.parallel import DistInfo
from lmforge.train.trainer import Trainer
from tests.train.seqpar_train_worker import (TINY, fresh_model, gloo_group, layout_info, loss_and_grads, one_thread,
                                             train_section, write_report)

LAYOUTS = ((1, 2), (2, 1))
# SimPO's margin gamma small: this policy's answers are near uniform, so a larger one would make every margin negative
LOSSES = {"dpo": PreferenceLoss("dpo", beta=0.5), "simpo": PreferenceLoss("simpo", beta=2.0, gamma=0.02)}
PROMPT = 12
ANSWERS = ((5, 9), (3, 11), (10, 2), (6, 6))  # (chosen, rejected) answer tokens: rows of 15..23 ids
MICRO = 2  # pairs per reference forward


def pairs() -> list[tuple[Encoded, Encoded]]:
    """Four pairs of random answers to random 12-token prompts."""
    gen = torch.Generator().manual_seed(3)
    out = []
    for lengths in ANSWERS:
        prompt = torch.randint(1, TINY.vocab_size, (PROMPT,), generator=gen).tolist()
        out.append(tuple(Encoded(prompt + torch.randint(1, TINY.vocab_size, (n,), generator=gen).tolist(),
                                 [False] * PROMPT + [True] * n) for n in lengths))
    return out


def reference_model() -> InternLM2:
    model = InternLM2(TINY)
    model.init_weights(seed=1)
    return model


def case(info: DistInfo, head: int, context: int) -> tuple[torch.Tensor, dict]:
    """(the reference table, {loss kind: (loss, parts, gradients)}) in this layout."""
    sp = SequenceParallelSection(head, context)
    encoded = pairs()
    ref = reference_table(Trainer(reference_model(), train_section(head, context), info), encoded, 0, MICRO)
    batch = pair_batch(encoded, 0, sp, ref)
    out = {kind: loss_and_grads(Trainer(fresh_model(), train_section(head, context), info), batch, LOSSES[kind])
           for kind in LOSSES}
    return ref, out


def run(rank: int, world: int, store: str, report: str) -> None:
    one_thread()
    ref_table, reference = case(DistInfo(), 1, 1)
    with gloo_group(rank, world, store):
        lines = []
        for head, context in LAYOUTS:
            table, got = case(layout_info(rank, world, 1, head, context), head, context)
            table_err = ((table - ref_table).abs().max() / ref_table.abs().max()).item()  # sums of order 50
            for kind, (loss, parts, grads) in got.items():
                ref_loss, ref_parts, ref_grads = reference[kind]
                loss_err = abs(loss - ref_loss)
                parts_err = max(abs(parts[k] - v) for k, v in ref_parts.items())
                grad_err = max((grads[k] - g).abs().max().item() for k, g in ref_grads.items())
                err = max(table_err, loss_err, parts_err, grad_err)
                lines.append(f"head={head} context={context} kind={kind} loss={loss:.6f} reference={ref_loss:.6f} "
                             f"margin={parts['margin']:.4f} acc={parts['acc']:.2f} ref_table_error={table_err:.3e} "
                             f"loss_error={loss_err:.3e} parts_error={parts_err:.3e} grad_error={grad_err:.3e} "
                             f"error={err:.3e}")
        write_report(rank, report, lines)
