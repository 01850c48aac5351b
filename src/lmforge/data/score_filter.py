"""A filter that writes a classifier score into each document and drops by a per-language threshold.

Shared by the safety stage (WanJuan-CC's `toxic_score`, `porn_score`: high is bad) and the quality
stage (`not_ad_score`, `fluency_score`: high is good); see WanJuan-CC, arXiv 2402.19282, stages 4-5,
and docs/papers.md §4. Documents are scored `batch_size` at a time (`filter_batch`); `threshold` is
one number or a table per language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.data.classifier import Scorer, load_scorer
from lmforge.data.document import Document
from lmforge.data.step import Filter, Verdict, per_language


@dataclass
class ScoreFilter(Filter):
    name: ClassVar[str] = "score"
    batch_size: ClassVar[int] = 256
    score_field: ClassVar[str] = "score"
    default_model: ClassVar[str] = ""
    drop_above: ClassVar[bool] = True       # toxic/porn: drop high scores; not_ad/fluency: drop low ones
    model: str = ""                         # a model path; empty: the shipped default
    threshold: float | dict = 0.5
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    drop: bool = True                       # false: only write the score

    def setup(self) -> None:
        self.scorer: Scorer = load_scorer(self.model, self.default_model)

    def filter_batch(self, docs: list[Document]) -> list[Verdict]:
        for doc, s in zip(docs, self.scorer.score([d.text for d in docs])):
            doc.scores[self.score_field] = round(s, 4)
        return [self.verdict(doc.scores[self.score_field], doc.language) for doc in docs]

    def filter(self, doc: Document) -> Verdict:
        return self.filter_batch([doc])[0]

    def verdict(self, score: float, language: str) -> Verdict:
        t = per_language(self.threshold, language)
        if self.drop and t is not None and (score > t if self.drop_above else score < t):
            return False, f"{self.score_field}_{'above' if self.drop_above else 'below'}_{t:g}"
        return True
