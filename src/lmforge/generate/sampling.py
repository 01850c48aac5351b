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
    # Structured output: the reply is JSON matching this JSON Schema ({} or True: any JSON value),
    # enforced token by token (lmforge.generate.token_mask); the engine's requests only.
    json_schema: dict | bool | None = None

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


def draw(probs: torch.Tensor, generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
    """One token id per row of probabilities (R, V), by inverse transform sampling: one uniform number
    per row, from that row's own generator when it has one, so that a row's draw depends on its seed
    only (not on the batch around it), while the search runs over the whole batch at once."""
    if generators is None:
        u = torch.rand(probs.shape[0], device=probs.device)
    else:
        u = torch.stack([torch.rand((), generator=g, device=g.device if g is not None else "cpu")
                         for g in generators]).to(probs.device)
    cdf = probs.cumsum(-1)
    # side="right": the first token whose cumulative probability exceeds u x total, so a token of
    # probability 0 is never drawn
    ids = torch.searchsorted(cdf, (u.to(cdf.dtype) * cdf[:, -1])[:, None], right=True)[:, 0]
    return ids.clamp_(max=probs.shape[-1] - 1)


def sample_next(logits: torch.Tensor, params: SamplingParams,
                generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """Token ids (B,) from last-position logits (B, V). `generators`: one per row, so that a row's
    samples depend on its own seed only, not on which other rows share the batch."""
    if params.temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / params.temperature, params.top_k, params.top_p).softmax(-1)
    return draw(probs, generators)


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
    and history (`seen`: the ids the repetition penalty applies to). Rows that share top-k and top-p
    are filtered and drawn as one batch (each with its own temperature and generator)."""
    x = logits.float()
    penalized = [r for r, p in enumerate(params) if p.repetition_penalty != 1.0]
    if penalized:
        x = x.clone()
        for r in penalized:
            x[r] = penalize_repetition(x[r], seen[r], params[r].repetition_penalty)
    ids = x.argmax(-1).tolist()  # the greedy rows' tokens; the sampled rows' are replaced below
    groups: dict[tuple[int, float], list[int]] = {}
    for r, p in enumerate(params):
        if p.temperature > 0:
            groups.setdefault((p.top_k, p.top_p), []).append(r)
    for (top_k, top_p), rows in groups.items():
        temperature = torch.tensor([params[r].temperature for r in rows], device=x.device)[:, None]
        probs = filter_logits(x[rows] / temperature, top_k, top_p).softmax(-1)
        for r, i in zip(rows, draw(probs, [generators[r] for r in rows]).tolist()):
            ids[r] = i
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
