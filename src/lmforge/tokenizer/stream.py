"""Incremental detokenization for streaming generation.

The InternLM2 chat model streams its reply token by token until `<|im_end|>` (InternLM2 report,
arXiv 2403.17297; docs/papers.md §1).

A byte-level or byte-fallback token can end in the middle of a UTF-8 character (a Chinese
character or an emoji often spans 2-4 tokens), and a SentencePiece decoder strips the leading
space of a sequence, so decoding each token on its own gives wrong text. `StreamDecoder` decodes a
short window of recent ids and emits only the text that is complete: whatever the window ends
with an incomplete character (decoded as U+FFFD) is held back until the next ids complete it.
"""

from __future__ import annotations

from lmforge.tokenizer.tokenizer import Tokenizer

_REPLACEMENT = "\ufffd"


class StreamDecoder:
    """Turn a stream of token ids into text pieces whose concatenation is `decode(all ids)`.

    `push(id)` returns the newly completed text ("" while a character is still incomplete);
    `flush()` returns whatever is held back (call it when generation ends, so a stream that
    really ends in U+FFFD or an unfinished byte sequence still matches `decode`).
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        # ids[prefix:read] were already emitted and are kept only as left context, because a
        # decoder's output for a token can depend on its neighbour (leading-space stripping,
        # multi-token characters); ids[read:] are not emitted yet.
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        return self._emit(final=False)

    def flush(self) -> str:
        """The held-back tail, if any; after this the decoder can keep going."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        context = self._decode(self.ids[self._prefix : self._read])
        text = self._decode(self.ids[self._prefix :])
        if len(text) <= len(context) or (text.endswith(_REPLACEMENT) and not final):
            return ""
        if not text.startswith(context):
            # Decoders used with lmforge are prefix-stable; if a foreign one is not, fall back
            # to the always-correct (quadratic) full decode rather than emit wrong text.
            emitted = self._decode(self.ids[: self._read])
            full = self._decode(self.ids)
            new = full[len(emitted) :]
        else:
            new = text[len(context) :]
        self._prefix, self._read = self._read, len(self.ids)
        return new
