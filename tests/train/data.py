"""Small training shards built from the embedded corpora, for the training tests."""

from __future__ import annotations

from pathlib import Path

from lmforge import corpora
from lmforge.shards import write_shard
from lmforge.tokenizer import Tokenizer, train_bpe


def documents(text: str, min_chars: int = 200) -> list[str]:
    """Split a corpus into documents at blank lines, merging short paragraphs."""
    docs, cur = [], ""
    for para in text.split("\n\n"):
        cur = f"{cur}\n\n{para}" if cur else para
        if len(cur) >= min_chars:
            docs.append(cur)
            cur = ""
    return docs


def make_dataset(root: Path, vocab_size: int = 512, chars: int = 400_000, min_chars: int = 200
                 ) -> tuple[Path, Tokenizer]:
    """root/tokenizer, root/train (4 shards), root/val (1 shard)."""
    text = corpora.english_text(max_chars=chars)
    tok = train_bpe([text], vocab_size=vocab_size)
    tok.save(root / "tokenizer")
    docs = [[tok.bos_id, *tok.encode(d), tok.eos_id] for d in documents(text, min_chars)]
    n_val = max(4, len(docs) // 20)
    val, train = docs[:n_val], docs[n_val:]
    for i in range(4):
        write_shard(root / "train", f"shard_{i:05d}", train[i::4], tok.vocab_size)
    write_shard(root / "val", "shard_00000", val, tok.vocab_size)
    return root, tok
