"""Tokenizers for lmforge.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1, "Tokenizer" and "Chat format".

Train a byte-level BPE with InternLM2's special tokens (`train_bpe`), load and save tokenizer
directories that `transformers` also reads, convert SentencePiece `tokenizer.model` files such as
InternLM2's (`Tokenizer.load`), render and encode the InternLM2 chat format, and detokenize a
token stream (`StreamDecoder`).
"""

from lmforge.tokenizer.bpe import train_bpe
from lmforge.tokenizer.chat import INTERNLM2_CHAT_TEMPLATE, render_chat
from lmforge.tokenizer.special import CHAT_TOKENS, IMAGE_TOKENS, SPECIAL_TOKENS
from lmforge.tokenizer.stats import bytes_per_token
from lmforge.tokenizer.stream import StreamDecoder
from lmforge.tokenizer.tokenizer import Tokenizer

__all__ = [
    "CHAT_TOKENS",
    "INTERNLM2_CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "IMAGE_TOKENS",
    "StreamDecoder",
    "Tokenizer",
    "bytes_per_token",
    "render_chat",
    "train_bpe",
]
