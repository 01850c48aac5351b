"""The text of one generated sequence as it streams: complete characters only, stop strings cut.

Tokens arrive one at a time; `StopText.push` returns the text that became final with each. Two
things are held back until the next tokens settle them: an incomplete UTF-8 character (decoded
incrementally by lmforge.tokenizer.stream.StreamDecoder, so each push costs a few tokens' decode,
not the whole sequence's), and a tail that may still grow into a stop string. When a stop string
appears, the text before it is the last thing emitted.
"""

from __future__ import annotations

from collections.abc import Sequence

from lmforge.tokenizer.stream import StreamDecoder


class StopText:
    def __init__(self, tokenizer, stop_strings: Sequence[str] = ()):
        """tokenizer None: no text (token ids only)."""
        self.decoder = StreamDecoder(tokenizer) if tokenizer is not None else None
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.text = ""  # every complete character decoded so far
        self.emitted = 0

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add a token; return (new final text, whether a stop string was reached)."""
        if self.decoder is None:
            return "", False
        self.text += self.decoder.push(token_id)
        for s in self.stop_strings:
            at = self.text.find(s, max(0, self.emitted - len(s)))
            if at != -1:
                return self._emit(at), True
        safe = len(self.text)
        for s in self.stop_strings:  # hold back a tail that may grow into a stop string
            for n in range(min(len(s) - 1, safe), 0, -1):
                if self.text[safe - n:safe] == s[:n]:
                    safe -= n
                    break
        return self._emit(safe), False

    def flush(self) -> str:
        """Everything not emitted yet (the sequence ended without a stop string)."""
        if self.decoder is None:
            return ""
        self.text += self.decoder.flush()
        return self._emit(len(self.text))

    def _emit(self, end: int) -> str:
        new = self.text[self.emitted:end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return new
