"""Reward-model ensembles against reward hacking (docs/papers.md §7, the ensemble survey arXiv
2101.08387; Coste et al., "Reward Model Ensembles Help Mitigate Overoptimization", arXiv 2310.02743).

K reward models trained with different seeds and data orders score the same answers; their scores
are combined by the mean, the worst case (min), or the uncertainty-penalised mean (mean - lambda *
std, the members' disagreement taken as risk). Each member's scores are standardised first (on a
reference set of scores, by default the ones being combined), since members need not share a scale.
A second route is checkpoint averaging (a model soup, Wortsman et al., arXiv 2203.05482): the
members' weights averaged into one model, which costs one forward instead of K.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

COMBINE = ("mean", "min", "mean_minus_std")


def standardise(scores: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Scores (K, N) with each member's row shifted and scaled to mean 0, std 1 over `reference` (K, M)."""
    ref = scores if reference is None else reference
    return (scores - ref.mean(1, keepdim=True)) / ref.std(1, keepdim=True).clamp(min=1e-6)


def combine(scores: torch.Tensor, how: str = "mean_minus_std", uncertainty: float = 1.0) -> torch.Tensor:
    """One score per answer (N,) from the members' (K, N)."""
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0).values
    if how == "mean_minus_std":
        std = scores.std(0) if scores.shape[0] > 1 else torch.zeros_like(scores[0])
        return scores.mean(0) - uncertainty * std
    raise ValueError(f"combine = {how!r}: expected one of {COMBINE}")


def soup(state_dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of models with the same architecture (a uniform model soup)."""
    if not state_dicts:
        raise ValueError("a soup needs at least one model")
    keys = set(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], 1):
        if set(sd) != keys:
            raise ValueError(f"model {i} has other tensors than model 0; only models of one architecture average")
    return {k: torch.stack([sd[k].float() for sd in state_dicts]).mean(0) for k in state_dicts[0]}
