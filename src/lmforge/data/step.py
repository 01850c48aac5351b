"""The one interface every pipeline stage shares (datatrove's shape).

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

A `Step` is a generator transform `run(docs, rank, world_size) -> docs`. Besides its parameters
(steps are dataclasses: their fields are what a recipe may set, checked strictly when the recipe is
read) a step declares, as class attributes:

    name          the step's name in a recipe
    sink          True: it writes its own output (token shards), yields nothing, comes last
    whole_corpus  True: it needs every document at once (MinHash dedup) and is the only step of its
                  stage; `corpus_stage(...)` builds the multi-phase stage that runs it. Otherwise a
                  map stage runs it document by document, in a list with other steps.

and may override `prepare(stage)` (once per run, before any task: train a shared tokenizer) and
`setup()` (once per task: load models, build automata, so a step pickles cheaply to worker
processes and Ray workers).

A `Filter` only implements `filter(doc) -> bool | (bool, reason)`, or `filter_batch(docs)` for
filters that score many documents at once (`batch_size`). Its `run` is the one place that passes
documents of other languages through untouched (`languages`), batches, and counts every drop with
its reason (WanJuan-CC reports the retention of each stage, so a drop without a reason is a bug).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from lmforge.data.document import Document

if TYPE_CHECKING:
    from lmforge.data.stage import Stage

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
    sink: ClassVar[bool] = False
    whole_corpus: ClassVar[bool] = False
    stats: TaskStats

    def prepare(self, stage: Stage) -> None:
        """Run once per run by the executor, before any task of `stage`."""

    def setup(self) -> None:
        """Load models or build tables; called once per task before `run`."""

    def bind(self, stats: TaskStats) -> Step:
        self.stats = stats
        return self

    def run(self, docs: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        raise NotImplementedError

    def corpus_stage(self, **stage_args: Any) -> Stage:
        """The stage that runs a `whole_corpus` step; `stage_args` are `Stage`'s fields (name, out, ...)."""
        raise NotImplementedError(f"{self.name}: only a whole-corpus step has a stage of its own")


Verdict = bool | tuple[bool, str]  # keep, or (keep, reason of the drop)


class Filter(Step):
    """A step that keeps or drops each document; every drop is counted with its reason."""

    name: ClassVar[str] = "filter"
    batch_size: ClassVar[int] = 1           # documents per `filter_batch` call
    # The languages the filter is written for; documents of other languages pass through untouched.
    # None (or empty): every language. Subclasses make it a parameter with their own default.
    languages: list[str] | None = None

    def filter(self, doc: Document) -> Verdict:
        raise NotImplementedError

    def filter_batch(self, docs: list[Document]) -> list[Verdict]:
        """One verdict per document; override to score a batch at once (classifiers)."""
        return [self.filter(doc) for doc in docs]

    def applies_to(self, doc: Document) -> bool:
        return not self.languages or doc.language in self.languages

    def run(self, docs: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for batch in batched(docs, self.batch_size):
            judged = [self.applies_to(doc) for doc in batch]
            verdicts = self.filter_batch([doc for doc, j in zip(batch, judged) if j]) if any(judged) else []
            if len(verdicts) != sum(judged):
                raise ValueError(f"{self.name}: filter_batch gave {len(verdicts)} verdicts for {sum(judged)} documents")
            verdict = iter(verdicts)
            for doc, j in zip(batch, judged):
                keep, reason = _keep_and_reason(next(verdict), self.name) if j else (True, "")
                if keep:
                    yield doc
                else:
                    self.stats.drop(self.name, reason, doc)


def _keep_and_reason(verdict: Verdict, default_reason: str) -> tuple[bool, str]:
    return verdict if isinstance(verdict, tuple) else (verdict, default_reason)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last one shorter), read lazily."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


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
