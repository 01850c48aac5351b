"""Next-token selection: greedy, temperature, top-k and nucleus (top-p) sampling, the repetition
penalty, and the log-probabilities of what was chosen.

`sample_next` serves a batch that shares one `SamplingParams` (lmforge.generate.generate);
`sample_rows` a batch whose rows each bring their own (the serving engine's requests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 means greedy (argmax)
    top_k: int = 0  # 0 disables
    top_p: float = 1.0  # 1.0 disables
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None  # row i of a batch samples with seed + i
    # CTRL's repetition penalty as transformers applies it: the logit of every token already in the
    # prompt or the output is divided by it when positive, multiplied when negative; 1 disables.
    repetition_penalty: float = 1.0
    logprobs: int | None = None  # the log-probability of each chosen token, and of this many top ones

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if self.top_k < 0 or self.max_new_tokens < 0:
            raise ValueError("top_k and max_new_tokens must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty={self.repetition_penalty} must be > 0 (1 disables)")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs={self.logprobs} must be >= 0")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the smallest set whose probability
    reaches top_p (the most likely token is always kept)."""
    logits = logits.clone()
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p.
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = float("-inf")
    return logits


def sample_next(logits: torch.Tensor, params: SamplingParams,
                generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """Token ids (B,) from last-position logits (B, V). `generators`: one per row, so that a row's
    samples depend on its own seed only, not on which other rows share the batch."""
    if params.temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / params.temperature, params.top_k, params.top_p).softmax(-1)
    if generators is None:
        return torch.multinomial(probs, 1).squeeze(-1)
    return torch.cat([torch.multinomial(probs[r:r + 1], 1, generator=g) for r, g in enumerate(generators)]).squeeze(-1)


def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """logits (V,) with the tokens in `seen` (ids, any order, repeats allowed) penalised."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    picked = logits.gather(0, seen)
    return logits.scatter(0, seen, torch.where(picked > 0, picked / penalty, picked * penalty))


@dataclass
class Choice:
    token_id: int
    logprob: float | None = None  # log P(token) under the model's distribution (before sampling settings)
    top: list[tuple[int, float]] | None = None  # the most likely tokens and their log-probabilities


def sample_rows(logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator | None],
                seen: Sequence[torch.Tensor]) -> list[Choice]:
    """One token per row of last-position logits (B, V), each row with its own settings, generator
    and history (`seen`: the ids the repetition penalty applies to)."""
    plain = all(p.temperature == 0 and p.repetition_penalty == 1.0 for p in params)
    ids = logits.argmax(-1).tolist() if plain else []
    if not plain:
        for row, (p, g, hist) in enumerate(zip(params, generators, seen)):
            x = penalize_repetition(logits[row].float(), hist, p.repetition_penalty)
            if p.temperature == 0:
                ids.append(int(x.argmax()))
                continue
            probs = filter_logits(x[None] / p.temperature, p.top_k, p.top_p).softmax(-1)
            ids.append(int(torch.multinomial(probs, 1, generator=g)))
    choices = [Choice(i) for i in ids]
    wanted = [r for r, p in enumerate(params) if p.logprobs is not None]
    if wanted:
        logp = logits[wanted].float().log_softmax(-1)
        for j, r in enumerate(wanted):
            choices[r].logprob = float(logp[j, ids[r]])
            if params[r].logprobs:
                top = logp[j].topk(params[r].logprobs)
                choices[r].top = list(zip(top.indices.tolist(), top.values.tolist()))
    return choices
