"""Perplexity filters with an lmforge checkpoint.

Papers: WanJuan-CC, arXiv 2402.19282, quality stage; InternLM2 report, arXiv 2403.17297, long-context
data; docs/papers.md §4.

`perplexity`: exp(mean negative log-likelihood) of a document's first `max_tokens` tokens under a
model; documents above a per-language threshold are dropped (`perplexity` score).
`perplexity_gain`: InternLM2's long-context filter. A document's tokens are split into S1 (the
first `context_tokens`) and S2 (the next `target_tokens`); the gain is the mean log-probability of
S2 given S1 minus that of S2 alone, log P(S2 | S1) - log P(S2) per token, in nats. Text whose
beginning does not help predict its end (concatenated unrelated pieces) has a gain near zero and
is dropped below `min_gain`.

The model is imported here, inside the step, so `lmforge.data` stays free of `lmforge.model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Filter, Verdict, per_language


def token_logprobs(model, ids: list[int]) -> list[float]:
    """log P(ids[t] | ids[:t]) for t = 1..len(ids)-1 under `model` (one forward pass)."""
    import torch

    from lmforge.model.logprobs import token_logprobs as row_logprobs

    with torch.no_grad():
        x = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
        return row_logprobs(model, x)[0].tolist()


@dataclass
class _ModelFilter(Filter):
    model: str = ""              # an lmforge / HF checkpoint directory holding the tokenizer too
    tokenizer: str = ""          # defaults to `model`
    device: str = "cpu"

    def setup(self) -> None:
        from lmforge.inference import load_for_inference

        if not self.model:
            raise ValueError(f"{self.name}: set `model` to an lmforge checkpoint directory")
        self.lm, self.tok = load_for_inference(self.model, self.device, tokenizer=self.tokenizer or None)

    def prefix(self) -> list[int]:
        return [self.tok.bos_id] if self.tok.bos_id is not None else []


@dataclass
class PerplexityFilter(_ModelFilter):
    name: ClassVar[str] = "perplexity"
    max_tokens: int = 512
    threshold: float | dict | None = None     # drop above; None: only score
    languages: list[str] | None = None

    def perplexity(self, text: str) -> float:
        import math

        ids = self.prefix() + self.tok.encode(text)[: self.max_tokens]
        if len(ids) < 2:
            return float("inf")
        lp = token_logprobs(self.lm, ids)
        return math.exp(-sum(lp) / len(lp))

    def filter(self, doc: Document) -> Verdict:
        ppl = self.perplexity(doc.text)
        doc.scores["perplexity"] = round(ppl, 3)
        t = per_language(self.threshold, doc.language)
        if t is not None and ppl > t:
            return False, f"perplexity_above_{t:g}"
        return True


@dataclass
class PerplexityGainFilter(_ModelFilter):
    name: ClassVar[str] = "perplexity_gain"
    context_tokens: int = 1024
    target_tokens: int = 256
    min_gain: float = 0.1

    def gain(self, text: str) -> float:
        ids = self.tok.encode(text)
        s1 = ids[: self.context_tokens]
        s2 = ids[self.context_tokens: self.context_tokens + self.target_tokens]
        if not s1 or not s2:
            return float("nan")
        alone = token_logprobs(self.lm, self.prefix() + s2)        # all of S2 after BOS, else S2[1:]
        with_context = token_logprobs(self.lm, self.prefix() + s1 + s2)[-len(alone):] if alone else []
        if not alone:
            return float("nan")
        return (sum(with_context) - sum(alone)) / len(alone)

    def filter(self, doc: Document) -> Verdict:
        g = self.gain(doc.text)
        doc.scores["ppl_gain"] = round(g, 4)
        if not g >= self.min_gain:  # NaN (too short to split) is dropped too
            return False, "perplexity_gain_too_small" if g == g else "too_short_to_split"
        return True
