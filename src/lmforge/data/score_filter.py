"""A step that writes a classifier score into each document and drops by a per-language threshold.

Shared by the safety stage (WanJuan-CC's `toxic_score`, `porn_score`: high is bad) and the quality
stage (`not_ad_score`, `fluency_score`: high is good); PAPERS.md section 4, stages 4-5. Documents
are scored in batches; `threshold` is one number or a table per language.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.data.classifier import Scorer, load_scorer
from lmforge.data.document import Document
from lmforge.data.step import Step, per_language

BATCH = 256


@dataclass
class ScoreFilter(Step):
    name: ClassVar[str] = "score"
    score_field: ClassVar[str] = "score"
    default_model: ClassVar[str] = ""
    drop_above: ClassVar[bool] = True       # toxic/porn: drop high scores; not_ad/fluency: drop low ones
    model: str = ""                         # a model path; empty: the shipped default
    threshold: float | dict = 0.5
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    drop: bool = True                       # false: only write the score

    def setup(self) -> None:
        self.scorer: Scorer = load_scorer(self.model, self.default_model)

    def run(self, docs: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= BATCH:
                yield from self._flush(batch)
                batch = []
        yield from self._flush(batch)

    def _flush(self, batch: list[Document]) -> Iterator[Document]:
        scored = [d for d in batch if not self.languages or d.language in self.languages]
        for doc, s in zip(scored, self.scorer.score([d.text for d in scored]) if scored else []):
            doc.scores[self.score_field] = round(s, 4)
        for doc in batch:
            s = doc.scores.get(self.score_field)
            t = per_language(self.threshold, doc.language)
            if self.drop and s is not None and t is not None and (s > t if self.drop_above else s < t):
                self.stats.drop(self.name, f"{self.score_field}_{'above' if self.drop_above else 'below'}_{t:g}", doc)
            else:
                yield doc
