"""Tokenized, packed training shards: the file format between `lmforge data` and `lmforge train`.

A shard is three files sharing a stem, in a dataset directory:

    <stem>.bin        token ids of every document, back to back, little-endian uint16 or uint32
    <stem>.idx.npy    int64 document offsets into .bin, n_docs + 1 entries (doc i = [off[i], off[i+1]))
    <stem>.json       header: format version, dtype, vocab_size, n_docs, n_tokens, tokenizer id, ...

The header is written last, by an atomic rename, so it doubles as the shard's completion marker: a
shard without its .json is an interrupted write and is ignored by readers (and overwritten by the
next writer). uint16 is used whenever the vocabulary fits (InternLM2's 92,544 does not: uint32).
Each document is stored as the tokenizer produced it; the data pipeline's tokenize step adds BOS
and EOS so that the boundaries survive packing (InternLM2 report, arXiv 2403.17297, section 3.1;
docs/papers.md §4).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FORMAT = "lmforge-shard-v1"


class ShardError(ValueError):
    """A shard that cannot be read; the message names the file and what to do."""


@dataclass
class ShardHeader:
    dtype: str
    vocab_size: int
    n_docs: int
    n_tokens: int
    tokenizer: str = ""  # an identifier of the tokenizer (e.g. a hash of tokenizer.json)
    format: str = FORMAT


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_shard(directory: str | Path, stem: str, documents: Iterable[Sequence[int]], vocab_size: int,
                tokenizer: str = "") -> ShardHeader:
    """Write documents (sequences of token ids) as one shard; atomic, header last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for(vocab_size)
    offsets = [0]
    bin_tmp, idx_tmp = _temp(directory, stem + ".bin"), _temp(directory, stem + ".idx.npy")
    try:
        with open(bin_tmp, "wb") as f:
            for doc in documents:
                arr = np.asarray(doc, dtype=np.int64)
                if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                    raise ShardError(f"{directory / stem}.bin: document {len(offsets) - 1} has token ids outside "
                                     f"[0, {vocab_size}); was it tokenized with another tokenizer?")
                f.write(arr.astype(dtype.newbyteorder("<")).tobytes())
                offsets.append(offsets[-1] + arr.size)
        with open(idx_tmp, "wb") as f:
            np.save(f, np.asarray(offsets, dtype=np.int64))
        os.replace(bin_tmp, directory / f"{stem}.bin")
        os.replace(idx_tmp, directory / f"{stem}.idx.npy")
    finally:
        for tmp in (bin_tmp, idx_tmp):
            if os.path.exists(tmp):
                os.unlink(tmp)
    header = ShardHeader(dtype=dtype.name, vocab_size=vocab_size, n_docs=len(offsets) - 1,
                         n_tokens=offsets[-1], tokenizer=tokenizer)
    head_tmp = _temp(directory, stem + ".json")
    Path(head_tmp).write_text(json.dumps(asdict(header), indent=2) + "\n")
    os.replace(head_tmp, directory / f"{stem}.json")
    return header


def _temp(directory: Path, name: str) -> str:
    fd, path = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    return path


@dataclass
class Shard:
    """A shard opened for reading: tokens memory-mapped, offsets in memory."""

    path: Path  # the stem path, without suffix
    header: ShardHeader
    tokens: np.ndarray
    offsets: np.ndarray

    @property
    def n_docs(self) -> int:
        return self.header.n_docs

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]


def open_shard(header_path: str | Path) -> Shard:
    """Open the shard whose header is `header_path` (<stem>.json), checking it is whole and sane."""
    header_path = Path(header_path)
    stem = header_path.with_suffix("")
    try:
        raw = json.loads(header_path.read_text())
        header = ShardHeader(**raw)
    except (json.JSONDecodeError, TypeError) as e:
        raise ShardError(f"{header_path}: not a valid shard header ({e})") from None
    if header.format != FORMAT:
        raise ShardError(f"{header_path}: format {header.format!r}, expected {FORMAT!r}")
    if header.dtype not in ("uint16", "uint32"):
        raise ShardError(f"{header_path}: token dtype {header.dtype!r} must be uint16 or uint32")
    bin_path, idx_path = Path(f"{stem}.bin"), Path(f"{stem}.idx.npy")
    for p in (bin_path, idx_path):
        if not p.is_file():
            raise ShardError(f"{p}: missing (its header {header_path.name} exists); rerun `lmforge data` to rewrite it")
    dtype = np.dtype(header.dtype).newbyteorder("<")
    size = bin_path.stat().st_size
    if size != header.n_tokens * dtype.itemsize:
        raise ShardError(f"{bin_path}: {size} bytes, but the header says {header.n_tokens} {header.dtype} tokens "
                         f"({header.n_tokens * dtype.itemsize} bytes); the shard is truncated or has another dtype")
    offsets = np.load(idx_path, allow_pickle=False)
    if offsets.shape != (header.n_docs + 1,) or offsets[0] != 0 or offsets[-1] != header.n_tokens:
        raise ShardError(f"{idx_path}: offsets do not match the header ({header.n_docs} docs, {header.n_tokens} tokens)")
    tokens = np.memmap(bin_path, dtype=dtype, mode="r") if header.n_tokens else np.zeros(0, dtype)
    return Shard(stem, header, tokens, offsets)


def list_shards(directory: str | Path) -> list[Path]:
    """Headers of the complete shards in a directory, sorted by name (interrupted writes skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardError(f"{directory}: no such shard directory; run `lmforge data` to write shards there")
    return sorted(p for p in directory.glob("*.json") if Path(f"{p.with_suffix('')}.bin").exists())
