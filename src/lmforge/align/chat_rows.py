"""Conversations as training rows: rendered with the tokenizer's chat template, a loss mask over the
assistant turns only, packed several to a row with document boundaries (InternLM2 report, arXiv
2403.17297, section 4.1; docs/papers.md §6).

The mask: a token counts when it overlaps an assistant turn's text, from just after the template's
`<|im_start|>assistant\\n` to the end of the turn as the template renders it (`...<|im_end|>\\n`), so
the model learns to end its turn. This is the prompt-completion rule of TRL's SFTTrainer (the
completion starts where the tokens of the prompt and of prompt + completion diverge), applied to
every assistant turn of a multi-turn conversation; tests/align check the two agree.

Packing: conversations are laid end to end, each whole, into rows of `seq_len + 1` tokens (input
`row[:-1]`, targets `row[1:]`), a new row started when the next one does not fit; the rest of a row
is padding with its own document id and no targets. Attention stays inside each conversation and
positions restart (the model's packed attention). A conversation longer than a row is cut in the
middle of its prompt, as LongBench truncates long inputs (`fit_to_row`): it keeps its head (the
system prompt, the first passages) and its tail (the last passages, the question and the answer),
so a long-context conversation (MIMG's) still trains on its answer; counted as truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lmforge.model.loss import IGNORE_INDEX
from lmforge.train.batch import Batch


@dataclass
class Encoded:
    ids: list[int]
    mask: list[bool]  # True on the tokens the loss learns (assistant turns)


def assistant_spans(tokenizer, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    text = tokenizer.render_chat(messages, add_generation_prompt=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(tokenizer.render_chat(messages[:i], add_generation_prompt=True))
        through = tokenizer.render_chat(messages[:i + 1], add_generation_prompt=False)
        end = len(through)
        if not text.startswith(through):
            raise ValueError("the chat template does not render a conversation's turns as prefixes of the "
                             "whole; the assistant turns cannot be located")
        spans.append((start, end))
    return text, spans


def encode_conversation(tokenizer, messages: Sequence[dict], last_only: bool = False) -> Encoded:
    """Token ids of the rendered conversation and its assistant-token mask (of every assistant turn,
    or of the last one only)."""
    text, spans = assistant_spans(tokenizer, messages)
    spans = spans[-1:] if last_only else spans
    enc = tokenizer.backend.encode(text, add_special_tokens=False)
    mask = [any(a < e and b > s for s, e in spans) for a, b in enc.offsets]
    return Encoded(list(enc.ids), mask)


def encode_prompt_answer(tokenizer, prompt: Sequence[dict], answer: str) -> Encoded:
    """One assistant answer to a prompt (its messages so far): only the answer is masked in (earlier
    assistant turns are context), as TRL's prompt-completion format does."""
    return encode_conversation(tokenizer, [*prompt, {"role": "assistant", "content": answer}], last_only=True)


def fit_to_row(e: Encoded, limit: int) -> Encoded:
    """`e` cut to `limit` tokens by dropping a middle stretch of the prompt before its last answer:
    up to half the row from the head, the rest from the tail, which keeps the whole last answer.
    An answer that alone exceeds the row keeps the row's last `limit` tokens."""
    n = len(e.ids)
    if n <= limit:
        return e
    drop = n - limit
    answer = n - 1
    while answer > 0 and not (not e.mask[answer - 1] and e.mask[answer]):  # start of the last answer
        answer -= 1
    cut = max(0, min(limit // 2, answer - drop))
    return Encoded(e.ids[:cut] + e.ids[cut + drop:], e.mask[:cut] + e.mask[cut + drop:])


def pack(encoded: Sequence[Encoded], seq_len: int) -> list[list[int]]:
    """Group conversations (indices into `encoded`) into rows of at most seq_len + 1 tokens, in order.
    Each must fit a row already (`fit_to_row` cuts one that does not; the VL loader leaves it out)."""
    rows, current, used = [], [], 0
    for i, e in enumerate(encoded):
        n = len(e.ids)
        if n > seq_len + 1:
            raise ValueError(f"conversation {i} has {n} tokens, more than a row of {seq_len + 1}; "
                             "cut it to the row first (chat_rows.fit_to_row)")
        if current and used + n > seq_len + 1:
            rows.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        rows.append(current)
    return rows


def build_rows(encoded: Sequence[Encoded], groups: Sequence[Sequence[int]], seq_len: int, pad_id: int = 0) -> Batch:
    """A Batch of packed rows (B = len(groups), L = seq_len) with targets, document ids and loss mask."""
    B, L = len(groups), seq_len
    ids = np.full((B, L + 1), pad_id, np.int64)
    docs = np.zeros((B, L + 1), np.int64)
    mask = np.zeros((B, L + 1), bool)
    for r, group in enumerate(groups):
        at = 0
        for d, i in enumerate(group):
            e = encoded[i]
            n = min(len(e.ids), L + 1 - at)
            ids[r, at:at + n], mask[r, at:at + n], docs[r, at:at + n] = e.ids[:n], e.mask[:n], d
            at += n
        docs[r, at:] = len(group)  # padding: a document of its own
    targets = ids[:, 1:].copy()
    same_doc = docs[:, 1:] == docs[:, :-1]
    keep = same_doc & mask[:, 1:]
    targets[~keep] = IGNORE_INDEX
    return Batch(torch.from_numpy(ids[:, :-1].copy()), torch.from_numpy(targets),
                 torch.from_numpy(docs[:, :-1].copy()), loss_mask=torch.from_numpy(keep))


class SFTLoader:
    """Packed SFT rows, an epoch at a time in a seeded order; step s takes global rows [sG, (s+1)G) and
    each data-parallel rank its contiguous share, as the pre-training loader does (so the state is
    (epoch, next global row), and one process and N processes see the same data)."""

    def __init__(self, encoded: Sequence[Encoded], seq_len: int, global_batch: int, micro_batch: int,
                 dp_rank: int = 0, dp_size: int = 1, seed: int = 0, pad_id: int = 0):
        if not encoded:
            raise ValueError("no conversations to train on")
        self.truncated = sum(len(e.ids) > seq_len + 1 for e in encoded)
        encoded = [fit_to_row(e, seq_len + 1) for e in encoded]
        self.encoded, self.seq_len, self.pad_id, self.seed = encoded, seq_len, pad_id, seed
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.accum = global_batch // (micro_batch * dp_size)
        self.epoch, self.row = 0, 0
        self._rows_epoch, self._rows = -1, []

    def _epoch_rows(self, epoch: int) -> list[list[int]]:
        if epoch != self._rows_epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.encoded))
            groups = pack([self.encoded[i] for i in order], self.seq_len)
            self._rows = [[int(order[i]) for i in g] for g in groups]
            self._rows_epoch = epoch
        return self._rows

    @property
    def rows_per_epoch(self) -> int:
        return len(self._epoch_rows(0))

    def next_step(self) -> list[Batch]:
        """This rank's micro-batches of the next global batch."""
        groups = []
        while len(groups) < self.global_batch:
            rows = self._epoch_rows(self.epoch)
            take = rows[self.row:self.row + self.global_batch - len(groups)]
            groups += take
            self.row += len(take)
            if self.row >= len(rows):
                self.epoch, self.row = self.epoch + 1, 0
        share = self.global_batch // self.dp_size
        mine = groups[self.dp_rank * share:(self.dp_rank + 1) * share]
        return [self.build(mine[i:i + self.micro_batch]) for i in range(0, len(mine), self.micro_batch)]

    def build(self, groups: Sequence[Sequence[int]]) -> Batch:
        """One micro-batch of packed rows from groups of indices into `encoded`."""
        return build_rows(self.encoded, groups, self.seq_len, self.pad_id)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "row": self.row}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.row = int(state["epoch"]), int(state["row"])
