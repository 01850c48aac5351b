"""The tokenize stage: documents -> packed token shards.

Papers: WanJuan-CC, arXiv 2402.19282; InternLM2 report, arXiv 2403.17297, section 3.1; docs/papers.md §4.

Each document becomes BOS + tokens + EOS, so its boundaries survive packing, and each task writes
one shard `<rank>` with `lmforge.shards.write_shard` (uint16 when the vocabulary fits, else
uint32; offsets in `.idx.npy`; the header written last doubles as the completion marker). The
tokenizer is a directory (`Tokenizer.load`), or `embedded:<vocab size>` to train a byte-level BPE
on the embedded corpora once per run (`<output>/tokenizer/`) before the tasks start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Step, batched

EMBEDDED = "embedded:"
BATCH = 64


@dataclass
class Tokenize(Step):
    name: ClassVar[str] = "tokenize"
    sink: ClassVar[bool] = True     # writes shards, yields no documents
    tokenizer: str = "embedded:4096"
    add_bos: bool = True
    add_eos: bool = True
    max_chars_per_corpus: int = 1_000_000   # for `embedded:` training

    def prepare(self, stage) -> None:
        self.out_dir = str(stage.output_dir)
        if self.tokenizer.startswith(EMBEDDED):
            target = stage.out / "tokenizer"
            if not (target / "tokenizer.json").is_file():
                self._train_embedded(int(self.tokenizer[len(EMBEDDED):]), target)
            self.tokenizer = str(target)
        elif not Path(self.tokenizer).exists():
            raise FileNotFoundError(f"tokenize.tokenizer = {self.tokenizer!r}: no such directory; train one with "
                                    "`lmforge tokenizer train --out DIR` or use \"embedded:4096\"")

    def _train_embedded(self, vocab_size: int, target: Path) -> None:
        import shutil
        import tempfile

        from lmforge import corpora
        from lmforge.tokenizer import train_bpe

        texts = [corpora.english_text(self.max_chars_per_corpus), corpora.chinese_news_text(self.max_chars_per_corpus)]
        tok = train_bpe(texts, vocab_size=vocab_size)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tokenizer."))
        tok.save(tmp)
        if target.exists():  # another process got there first
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)

    def setup(self) -> None:
        from lmforge.tokenizer import Tokenizer

        self.tok = Tokenizer.load(self.tokenizer)
        tok_json = Path(self.tokenizer) / "tokenizer.json"
        self.tok_id = hashlib.sha1(tok_json.read_bytes()).hexdigest()[:16] if tok_json.is_file() else self.tokenizer
        if self.add_bos and self.tok.bos_id is None or self.add_eos and self.tok.eos_id is None:
            raise ValueError(f"{self.tokenizer}: the tokenizer has no BOS/EOS token; set add_bos/add_eos = false")

    def _token_docs(self, docs: Iterable[Document]) -> Iterator[list[int]]:
        for batch in batched(docs, BATCH):
            for doc, ids in zip(batch, self.tok.encode_batch([d.text for d in batch])):
                ids = ([self.tok.bos_id] if self.add_bos else []) + ids + ([self.tok.eos_id] if self.add_eos else [])
                self.stats.count_out(doc)
                self.stats.extra[f"tokens_{doc.language}"] += len(ids)
                self.stats.extra["tokens"] += len(ids)
                yield ids

    def run(self, docs: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        from lmforge.shards import write_shard

        header = write_shard(self.out_dir, f"{rank:05d}", self._token_docs(docs), self.tok.vocab_size, self.tok_id)
        self.stats.extra["shard_docs"] += header.n_docs
        return iter(())
