"""The quality stage: advertisement and fluency classifiers.

Paper: WanJuan-CC, arXiv 2402.19282, stage 5; docs/papers.md §4.

WanJuan-CC publishes `not_ad_score` and `fluency_score` in [0, 1] (high is good) and keeps the
documents above per-language thresholds. The perplexity filter, which needs an lmforge model,
lives in `lmforge.scorers.perplexity` and is named in a recipe as `perplexity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmforge.data.score_filter import ScoreFilter


@dataclass
class Advertisement(ScoreFilter):
    name: ClassVar[str] = "advertisement"
    score_field: ClassVar[str] = "not_ad_score"
    default_model: ClassVar[str] = "not_ad.npz"
    drop_above: ClassVar[bool] = False


@dataclass
class Fluency(ScoreFilter):
    name: ClassVar[str] = "fluency"
    score_field: ClassVar[str] = "fluency_score"
    default_model: ClassVar[str] = "fluency.npz"
    drop_above: ClassVar[bool] = False
