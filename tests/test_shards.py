"""The shard format shared by the data pipeline and the trainer."""

import json

import numpy as np
import pytest

from lmforge.shards import ShardError, list_shards, open_shard, write_shard


def test_roundtrip_and_dtype(tmp_path):
    docs = [[1, 5, 6, 2], [1, 2], list(range(1, 40))]
    h = write_shard(tmp_path, "s0", docs, vocab_size=1000)
    assert h.dtype == "uint16" and h.n_docs == 3 and h.n_tokens == 45
    shard = open_shard(tmp_path / "s0.json")
    assert [shard.document(i).tolist() for i in range(3)] == docs
    assert write_shard(tmp_path, "s1", docs, vocab_size=92544).dtype == "uint32"
    assert [p.name for p in list_shards(tmp_path)] == ["s0.json", "s1.json"]
    assert not list(tmp_path.glob("*.tmp"))


def test_out_of_vocab_tokens_are_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(ShardError, match="document 1 has token ids outside"):
        write_shard(tmp_path, "s0", [[1, 2], [3, 4000]], vocab_size=1000)
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_mistyped_shards_are_named(tmp_path):
    write_shard(tmp_path, "s0", [[1, 2, 3]] * 10, vocab_size=1000)
    data = (tmp_path / "s0.bin").read_bytes()
    (tmp_path / "s0.bin").write_bytes(data[:-4])
    with pytest.raises(ShardError, match=r"s0\.bin.*truncated"):
        open_shard(tmp_path / "s0.json")
    header = json.loads((tmp_path / "s0.json").read_text())
    header["dtype"] = "float32"
    (tmp_path / "s0.json").write_text(json.dumps(header))
    with pytest.raises(ShardError, match="dtype"):
        open_shard(tmp_path / "s0.json")


def test_interrupted_shard_is_invisible(tmp_path):
    write_shard(tmp_path, "s0", [[1, 2]], vocab_size=10)
    (tmp_path / "s1.bin").write_bytes(np.zeros(3, np.uint16).tobytes())  # no header: unfinished
    assert [p.name for p in list_shards(tmp_path)] == ["s0.json"]
    with pytest.raises(ShardError, match="no such shard directory"):
        list_shards(tmp_path / "missing")
