"""Preference pairs as training batches: rows [chosen_0, rejected_0, chosen_1, rejected_1, ...],
right-padded to the longest row of the micro-batch (the order the pairwise losses of
`lmforge.align.losses` read). Pairs are drawn an epoch at a time in a seeded order; step s takes
global pairs [sG, (s+1)G) and each data-parallel rank its contiguous share, so the loader's state
is (epoch, next pair), as for the SFT and pre-training loaders.

Two row kinds: reward-model rows (ids ending in the reward token; the reward is read at the last
one) and language-model rows for DPO and RL (prompt + answer with the answer tokens masked in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from lmforge.align.chat_rows import Encoded
from lmforge.model.loss import IGNORE_INDEX
from lmforge.train.batch import Batch


def reward_batch(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, seq_len: int | None = None) -> Batch:
    """Rows for a reward model: each pair's chosen then rejected ids; `seq_ends` holds the flat position
    (row * T + column) of each sequence's reward token, in that order. With `seq_len`, the sequences
    are packed whole into rows of that length with document ids (no padding between them, attention
    kept inside each); without, one sequence per row, right-padded to the longest."""
    from lmforge.align.reward import pad_rows

    seqs = [s for pair in pairs for s in pair]
    if seq_len is None:
        ids, ends = pad_rows(seqs, pad_id)
        return Batch(ids, torch.full_like(ids, IGNORE_INDEX), torch.zeros_like(ids), seq_ends=ends)
    if max(len(s) for s in seqs) > seq_len:
        raise ValueError(f"a reward-model sequence is longer than seq_len = {seq_len}")
    rows: list[list[int]] = [[]]
    used = 0  # tokens in the last row
    for i, s in enumerate(seqs):
        if used + len(s) > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += len(s)
    ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    docs = torch.zeros((len(rows), seq_len), dtype=torch.long)
    ends = torch.zeros(len(seqs), dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for d, i in enumerate(members):
            n = len(seqs[i])
            ids[r, at:at + n], docs[r, at:at + n] = torch.tensor(seqs[i]), d
            ends[i] = r * seq_len + at + n - 1
            at += n
        docs[r, at:] = len(members)  # padding: a document of its own
    return Batch(ids, torch.full_like(ids, IGNORE_INDEX), docs, seq_ends=ends)


def lm_pair_batch(pairs: Sequence[tuple[Encoded, Encoded]], pad_id: int,
                  ref_logps: torch.Tensor | None = None) -> Batch:
    """Rows for DPO / SimPO: each pair's chosen then rejected answer; `ref_logps` (pairs, 2) the
    reference model's log P(answer) of each."""
    b = lm_batch([e for pair in pairs for e in pair], pad_id)
    b.ref_logps = None if ref_logps is None else ref_logps.reshape(-1).float()
    return b


def lm_batch(seqs: Sequence[Encoded], pad_id: int) -> Batch:
    """Right-padded language-model rows: targets of each row, the masked-in tokens (answers) in the
    loss mask, padding its own document."""
    T = max(len(e.ids) for e in seqs) - 1
    ids = np.full((len(seqs), T + 1), pad_id, np.int64)
    mask = np.zeros((len(seqs), T + 1), bool)
    docs = np.ones((len(seqs), T + 1), np.int64)
    for i, e in enumerate(seqs):
        ids[i, :len(e.ids)], mask[i, :len(e.ids)], docs[i, :len(e.ids)] = e.ids, e.mask, 0
    keep = mask[:, 1:] & (docs[:, 1:] == 0)
    targets = np.where(keep, ids[:, 1:], IGNORE_INDEX)
    return Batch(torch.from_numpy(ids[:, :-1].copy()), torch.from_numpy(targets), torch.from_numpy(docs[:, :-1].copy()),
                 loss_mask=torch.from_numpy(keep))


class PairLoader:
    """Seeded epochs over pair indices; `build(indices)` turns a micro-batch of pairs into a Batch."""

    def __init__(self, n_pairs: int, build: Callable[[list[int]], Batch], global_batch: int, micro_batch: int,
                 dp_rank: int = 0, dp_size: int = 1, seed: int = 0):
        if n_pairs < 1:
            raise ValueError("no preference pairs to train on")
        if global_batch % (micro_batch * dp_size):
            raise ValueError(f"global_batch = {global_batch} pairs: must be a multiple of micro_batch x processes "
                             f"= {micro_batch} x {dp_size}")
        self.n, self.build, self.seed = n_pairs, build, seed
        self.global_batch, self.micro_batch, self.dp_rank, self.dp_size = global_batch, micro_batch, dp_rank, dp_size
        self.accum = global_batch // (micro_batch * dp_size)
        self.epoch, self.pos = 0, 0

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def next_step(self) -> list[Batch]:
        picked: list[int] = []
        while len(picked) < self.global_batch:
            take = self._order(self.epoch)[self.pos:self.pos + self.global_batch - len(picked)]
            picked += [int(i) for i in take]
            self.pos += len(take)
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        share = self.global_batch // self.dp_size
        mine = picked[self.dp_rank * share:(self.dp_rank + 1) * share]
        return [self.build(mine[i:i + self.micro_batch]) for i in range(0, len(mine), self.micro_batch)]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
