"""Packed pre-training batches from token shards (InternEvo's packed dataset).

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §2.

Every epoch the documents of all shards are put in an order drawn from the seed and concatenated
into one token stream; row i of the epoch is the window `stream[i*L : i*L + L + 1]` (L = seq_len),
so rows are fixed-length and hold several documents. Each row comes with `document_ids` (attention
must not cross documents; positions restart) and targets where the next token of another
document is ignored (a document's first token cannot be predicted from the one before it).

With `shuffle_rows` the rows of each epoch are also taken in an order drawn from the seed (Megatron's
shuffle index over samples), so that one step's rows come from all over the corpus instead of from
one stretch of one document. That matters when documents are long against the batch: in the
Shakespeare race (42 plays of ~60k tokens, 1,024 tokens a step) consecutive rows kept every step,
and the whole of the final decay, inside one or two plays (docs/benchmarks.md).

The row sequence is the same whatever the number of processes: step s uses global rows
[s*G, (s+1)*G) (G = global batch) and rank k of W takes its contiguous share of them. So one
process and two processes see identical data, and a checkpoint written with N processes resumes
with M: the loader's whole state is (epoch, next global row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lmforge.model.loss import IGNORE_INDEX
from lmforge.shards import Shard, ShardError, list_shards, open_shard
from lmforge.train.batch import Batch


class TokenStream:
    """The documents of a shard directory as one token stream per epoch, in a seeded order."""

    def __init__(self, directory: str | Path, vocab_size: int, seed: int = 0):
        headers = list_shards(directory)
        if not headers:
            raise ShardError(f"{directory}: no complete shards (*.json + *.bin); run `lmforge data` first")
        self.shards: list[Shard] = [open_shard(h) for h in headers]
        for s in self.shards:
            if s.header.vocab_size > vocab_size:
                raise ShardError(f"{s.path}.json: written for a vocabulary of {s.header.vocab_size} tokens, "
                                 f"but the model has {vocab_size}; tokenize with the model's tokenizer")
        self.seed = seed
        self.doc_shard = np.concatenate([np.full(s.n_docs, i, np.int32) for i, s in enumerate(self.shards)])
        self.doc_index = np.concatenate([np.arange(s.n_docs, dtype=np.int64) for s in self.shards])
        lengths = np.concatenate([np.diff(s.offsets) for s in self.shards])
        self.lengths = lengths
        self.n_tokens = int(lengths.sum())
        self._epoch, self._order, self._starts = -1, None, None

    def _set_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = rng.permutation(len(self.lengths))
            self._starts = np.concatenate([[0], np.cumsum(self.lengths[self._order])])
            self._epoch = epoch

    def window(self, epoch: int, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens [start, start+length) of the epoch's stream and the document number of each."""
        self._set_epoch(epoch)
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        tokens, docs = [], []
        pos, k = start, first
        while pos < start + length:
            d = self._order[k]
            shard = self.shards[self.doc_shard[d]]
            doc = shard.document(int(self.doc_index[d]))
            a = pos - int(self._starts[k])
            b = min(len(doc), a + start + length - pos)
            tokens.append(np.asarray(doc[a:b], dtype=np.int64))
            docs.append(np.full(b - a, k, dtype=np.int64))
            pos += b - a
            k += 1
        return np.concatenate(tokens), np.concatenate(docs)


def rows_per_epoch(stream: TokenStream, seq_len: int) -> int:
    return (stream.n_tokens - 1) // seq_len


class PackedLoader:
    """Global-batch-aware packed loader; iterate with `next_step()`; state via `state_dict()`."""

    def __init__(self, directory: str | Path, vocab_size: int, seq_len: int, global_batch: int,
                 micro_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle_rows: bool = False):
        """rank / world_size: this process's place in the data-parallel dimension; shuffle_rows: the
        rows of each epoch in a seeded order instead of the stream's."""
        if global_batch % (micro_batch * world_size):
            raise ValueError(f"train.global_batch={global_batch} must be a multiple of micro_batch x data-parallel "
                             f"processes = {micro_batch} x {world_size}; change global_batch or micro_batch")
        self.stream = TokenStream(directory, vocab_size, seed)
        self.seq_len, self.global_batch, self.micro_batch = seq_len, global_batch, micro_batch
        self.rank, self.world_size = rank, world_size
        self.accum = global_batch // (micro_batch * world_size)
        self.rows_per_epoch = rows_per_epoch(self.stream, seq_len)
        if self.rows_per_epoch < global_batch:
            raise ShardError(f"{directory}: {self.stream.n_tokens} tokens make {self.rows_per_epoch} rows of "
                             f"{seq_len}, fewer than one global batch ({global_batch}); add data or shrink the batch")
        self.epoch, self.next_row = 0, 0
        self.shuffle_rows = shuffle_rows
        self._row_order: tuple[int, np.ndarray] | None = None  # (epoch, its permutation of rows)

    def row(self, epoch: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i of an epoch: with shuffle_rows, the window that the epoch's row permutation puts there."""
        if self.shuffle_rows:
            if self._row_order is None or self._row_order[0] != epoch:
                # a stream of its own (the documents' order draws from [seed, epoch])
                rng = np.random.default_rng([self.stream.seed, epoch, 1])
                self._row_order = (epoch, rng.permutation(self.rows_per_epoch))
            i = int(self._row_order[1][i])
        return self.stream.window(epoch, i * self.seq_len, self.seq_len + 1)

    def next_step(self) -> list[Batch]:
        """This rank's micro-batches for the next optimizer step (`accum` of them)."""
        if self.next_row + self.global_batch > self.rows_per_epoch:
            self.epoch, self.next_row = self.epoch + 1, 0  # drop the ragged tail of an epoch
        per_rank = self.global_batch // self.world_size
        first = self.next_row + self.rank * per_rank
        rows = [self.row(self.epoch, first + j) for j in range(per_rank)]
        self.next_row += self.global_batch
        return [make_batch(rows[m:m + self.micro_batch]) for m in range(0, per_rank, self.micro_batch)]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "next_row": self.next_row, "seq_len": self.seq_len,
                "global_batch": self.global_batch, "seed": self.stream.seed, "shuffle_rows": self.shuffle_rows}

    def load_state_dict(self, state: dict) -> None:
        mine = {"seq_len": self.seq_len, "global_batch": self.global_batch, "seed": self.stream.seed,
                "shuffle_rows": self.shuffle_rows}
        state = {"shuffle_rows": False, **state}  # states written before the option took rows in order
        for key, value in mine.items():
            if state[key] != value:
                raise ValueError(f"the checkpoint's loader has {key}={state[key]} but this run has {value}; "
                                 "resume with the recipe the checkpoint was written with")
        self.epoch, self.next_row = state["epoch"], state["next_row"]


def make_batch(rows: list[tuple[np.ndarray, np.ndarray]]) -> Batch:
    tokens = torch.from_numpy(np.stack([r[0] for r in rows]))
    docs = torch.from_numpy(np.stack([r[1] for r in rows]))
    targets = tokens[:, 1:].clone()
    targets[docs[:, 1:] != docs[:, :-1]] = IGNORE_INDEX
    return Batch(tokens[:, :-1].contiguous(), targets, docs[:, :-1].contiguous())


def validation_batches(stream: TokenStream, seq_len: int, n_rows: int, micro_batch: int, rank: int = 0,
                       world_size: int = 1) -> list[Batch]:
    """This rank's share of the first `n_rows` rows of a held-out stream, in micro-batches."""
    n_rows = min(n_rows, rows_per_epoch(stream, seq_len))
    mine = list(range(rank, n_rows, world_size))
    return [make_batch([stream.window(0, r * seq_len, seq_len + 1) for r in mine[i:i + micro_batch]])
            for i in range(0, len(mine), micro_batch)]
