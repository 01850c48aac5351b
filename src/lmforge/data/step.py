"""The one interface every pipeline stage shares (datatrove's shape, STYLE.md; PAPERS.md section 4).

A `Step` is a generator transform `run(docs, rank, world_size) -> docs`. A `Filter` only
implements `filter(doc) -> bool | (bool, reason)`; its `run` counts every drop with its reason
(WanJuan-CC reports the retention of each stage, so a drop without a reason is a bug). Steps are
dataclasses: their fields are the parameters a recipe may set, checked strictly when the recipe
is read. Heavy resources (models, automata) are built in `setup()`, inside the task, so that a
step pickles cheaply to worker processes and Ray workers.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lmforge.data.document import Document

MAX_ERRORS_KEPT = 1000  # per task; the count is always exact, the list of examples is capped


@dataclass
class TaskStats:
    """Counters of one task of one stage; written as JSON next to the stage's output."""

    stage: str
    rank: int
    docs_in: int = 0
    docs_out: int = 0
    lang_in: Counter = field(default_factory=Counter)      # documents entering, per language
    lang_out: Counter = field(default_factory=Counter)
    chars_in: Counter = field(default_factory=Counter)     # characters entering, per language
    chars_out: Counter = field(default_factory=Counter)
    drops: dict = field(default_factory=lambda: defaultdict(Counter))  # step -> reason -> n
    drops_lang: dict = field(default_factory=lambda: defaultdict(Counter))  # step -> language -> n
    n_errors: int = 0
    errors: list = field(default_factory=list)             # {"file", "offset", "error"}
    extra: Counter = field(default_factory=Counter)        # step-specific counters (tokens, ...)
    seconds: float = 0.0
    dropped: list = field(default_factory=list)            # (id, url, step, reason), for the report

    def count_in(self, doc: Document) -> None:
        self.docs_in += 1
        self.lang_in[doc.language] += 1
        self.chars_in[doc.language] += len(doc.text)

    def count_out(self, doc: Document) -> None:
        self.docs_out += 1
        self.lang_out[doc.language] += 1
        self.chars_out[doc.language] += len(doc.text)

    def drop(self, step: str, reason: str, doc: Document) -> None:
        self.drops[step][reason] += 1
        self.drops_lang[step][doc.language] += 1
        self.dropped.append((doc.id, doc.url, step, reason))

    def error(self, file: str, offset: int, message: str) -> None:
        self.n_errors += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append({"file": str(file), "offset": int(offset), "error": message})

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "rank": self.rank, "docs_in": self.docs_in, "docs_out": self.docs_out,
                "lang_in": dict(self.lang_in), "lang_out": dict(self.lang_out),
                "chars_in": dict(self.chars_in), "chars_out": dict(self.chars_out),
                "drops": {k: dict(v) for k, v in self.drops.items()},
                "drops_lang": {k: dict(v) for k, v in self.drops_lang.items()},
                "n_errors": self.n_errors, "errors": self.errors, "extra": dict(self.extra),
                "seconds": round(self.seconds, 3)}


class Step:
    """A generator transform over documents. Subclasses are dataclasses whose fields are parameters."""

    name: ClassVar[str] = "step"
    stats: TaskStats

    def setup(self) -> None:
        """Load models or build tables; called once per task before `run`."""

    def bind(self, stats: TaskStats) -> Step:
        self.stats = stats
        return self

    def run(self, docs: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        raise NotImplementedError


class Filter(Step):
    """A step that keeps or drops each document; every drop is counted with its reason."""

    name: ClassVar[str] = "filter"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def run(self, docs: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        languages = getattr(self, "languages", None)  # rules written for some languages pass others
        for doc in docs:
            if languages and doc.language not in languages:
                yield doc
                continue
            verdict = self.filter(doc)
            keep, reason = verdict if isinstance(verdict, tuple) else (verdict, self.name)
            if keep:
                yield doc
            else:
                self.stats.drop(self.name, reason, doc)


def per_language(value: float | dict[str, float] | None, language: str, default: float | None = None) -> float | None:
    """A threshold given once, or per language as {"en": .., "zh": .., "default": ..}."""
    if isinstance(value, dict):
        return value.get(language, value.get("default", default))
    return default if value is None else value


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start
