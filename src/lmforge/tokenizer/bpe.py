"""Training a byte-level BPE tokenizer with Hugging Face `tokenizers`.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1.

InternLM2's vocabulary is BPE with split digits and special chat tokens; `train_bpe` builds the
same kind of tokenizer at any size, from text files or from strings, with the special tokens at
ids 0..8 (see `special.py`) and the CJK-aware, digit-splitting pipeline of `pretokenize.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import AddedToken, trainers
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers.models import BPE
from tokenizers.pre_tokenizers import ByteLevel

from lmforge.tokenizer.pretokenize import byte_level_decoder, byte_level_pre_tokenizer
from lmforge.tokenizer.special import BOS, SPECIAL_TOKENS, bos_post_processor
from lmforge.tokenizer.tokenizer import Tokenizer

# Below this the vocabulary is only the special tokens and the 256 byte symbols: nothing to learn.
MIN_VOCAB = len(SPECIAL_TOKENS) + 256 + 1


def _split_inputs(texts_or_files: Iterable[str | os.PathLike]) -> tuple[list[str], Iterable[str]]:
    """Separate file paths (os.PathLike items) from raw strings; mixing both is ambiguous."""
    if isinstance(texts_or_files, (str, os.PathLike)):
        raise TypeError(
            "train_bpe takes a list of Path objects or an iterable of strings, not a single "
            "str/Path; wrap it in a list (use pathlib.Path for files)"
        )
    items = texts_or_files if isinstance(texts_or_files, (list, tuple)) else None
    if items is None:
        return [], texts_or_files  # a generator of strings: stream it
    paths = [x for x in items if isinstance(x, os.PathLike)]
    if paths and len(paths) != len(items):
        raise TypeError(
            "train_bpe got a mix of paths and strings; pass either pathlib.Path objects (files) "
            "or strings (text), not both"
        )
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"training file {p} does not exist")
    if items and not paths and all(_names_a_file(x) for x in items):
        # Training on the file *names* would silently give a useless tokenizer.
        raise TypeError(
            f"train_bpe got strings that are file paths ({items[0]!r}, ...); strings are "
            "training text, so pass [pathlib.Path(p) for p in paths] to train on the files"
        )
    return [os.fspath(p) for p in paths], ([] if paths else items)


def _names_a_file(text: object) -> bool:
    return isinstance(text, str) and len(text) < 4096 and "\n" not in text \
        and os.path.isfile(text)


def _check_strings(texts: Iterable[str]) -> Iterator[str]:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"train_bpe: item {i} is {type(t).__name__}, expected str "
                "(files go in a list of pathlib.Path, not in an iterator)"
            )
        yield t


def train_bpe(
    texts_or_files: Iterable[str] | Iterable[os.PathLike],
    vocab_size: int,
    min_frequency: int = 2,
    show_progress: bool = False,
    extra_special_tokens: Sequence[str] = (),
) -> Tokenizer:
    """Train a byte-level BPE on files (pass `pathlib.Path`s) or an iterable of strings.

    The result has exactly `vocab_size` entries unless the text runs out of pairs seen at least
    `min_frequency` times, in which case it is smaller. `tokenizers` pre-tokenizes strings (and
    file lines) in parallel, so many documents train faster than one huge string.
    `extra_special_tokens` (e.g. `special.IMAGE_TOKENS`) take the ids right after InternLM2's.
    """
    if vocab_size < MIN_VOCAB + len(extra_special_tokens):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: {len(SPECIAL_TOKENS) + len(extra_special_tokens)} special "
            f"tokens and 256 byte symbols come first, so use at least {MIN_VOCAB + len(extra_special_tokens)}"
        )
    files, texts = _split_inputs(texts_or_files)

    backend = BackendTokenizer(BPE())
    backend.pre_tokenizer = byte_level_pre_tokenizer()
    backend.decoder = byte_level_decoder()
    clash = sorted(set(extra_special_tokens) & set(SPECIAL_TOKENS))
    if clash:
        raise ValueError(f"extra_special_tokens {clash} are already InternLM2 special tokens; leave them out")
    specials = [AddedToken(t, special=True, normalized=False) for t in (*SPECIAL_TOKENS, *extra_special_tokens)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        # All 256 bytes up front, so text never seen in training still encodes (no <unk>).
        initial_alphabet=ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    if files:
        backend.train(files, trainer)
    else:
        backend.train_from_iterator(_check_strings(texts), trainer)
    backend.post_processor = bos_post_processor(backend.token_to_id(BOS))
    return Tokenizer(backend)
