"""What a benchmark task is: a small declarative definition.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9.

A `Task` names its data source (`docs`, `fewshot_docs`), its prompt template (`description`,
`query`, `answer`), how few-shot examples are picked (`num_fewshot`, `fewshot`), its mode and its
scorer. Templates are `str.format` strings over a document's fields (`"{question}\\nA. {choices[0]}"`)
or functions of the document. Three modes, as InternLM2 evaluates base models:

- `"ppl"`: multiple choice by log-likelihood. Each choice is scored as a continuation of the
  prompt after `target_delimiter`; accuracy takes the most likely choice, length-normalised
  accuracy the most likely per character of the choice (lm-evaluation-harness's `acc_norm`).
- `"gen"`: greedy generation up to a stop string; `extract` pulls the answer out of the text
  (GSM8K's final number) and `match` compares it with the gold answer.
- `"code"`: generation, then the program `program(doc, completion)` runs in the sandbox; pass@k.

`Task.examples()` renders documents into `Example`s: the exact prompt text, the choices and the
gold answer, which are all that a model and a scorer ever see.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

Template = str | Callable[[dict], str]
MODES = ("ppl", "gen", "code")


def render(template: Template, doc: dict) -> str:
    """Fill a template from a document's fields."""
    if callable(template):
        return template(doc)
    try:
        return template.format(**doc)
    except (KeyError, IndexError, AttributeError) as e:
        raise KeyError(f"template {template[:60]!r} refers to {e}, which the document lacks "
                       f"(fields: {sorted(doc)})") from None


@dataclass
class Example:
    """One rendered item: what the model is given and what counts as right."""

    id: str
    prompt: str
    gold: int | str | None  # index of the right choice ("ppl"), answer text ("gen"), None ("code")
    choices: list[str] = field(default_factory=list)  # "ppl": continuations, without the delimiter
    group: str | None = None  # subject, for per-subject metrics
    reference: str | None = None  # an ideal completion ("gen", "code"): what an oracle would write
    doc: dict = field(default_factory=dict, repr=False)


@dataclass
class Task:
    name: str
    mode: str
    docs: Callable[[], list[dict]]
    query: Template
    description: Template = ""
    answer: Template | None = None  # the answer shown after a few-shot example's query
    choices: Callable[[dict], list[str]] | None = None
    gold: Callable[[dict], int | str] | None = None
    num_fewshot: int = 0
    fewshot_docs: Callable[[], list[dict]] | None = None  # the pool; None: the task's own docs
    fewshot: str = "first_n"  # "first_n" (lm-eval's MMLU sampler) or "random" (seeded per item)
    fewshot_seed: int = 1234
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    group: Callable[[dict], str] | None = None
    limit_per_group: bool = False  # --limit counts per subject, like lm-eval's per-subtask limit
    doc_id: Callable[[dict], str] | None = None
    # "gen" and "code"
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    extract: Callable[[str], str] = str.strip
    match: Callable[[str, object], bool] = lambda pred, gold: pred == str(gold)
    reference: Callable[[dict], str] | None = None
    # "code"
    program: Callable[[dict, str], str] | None = None
    samples: int = 1  # completions per problem; pass@k needs samples >= k
    temperature: float = 0.0
    ks: tuple[int, ...] = (1,)
    timeout: float = 10.0
    paper: str = ""  # where the setting comes from, shown in reports

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"task {self.name!r}: mode={self.mode!r}, expected one of {MODES}")
        if self.mode == "ppl" and (self.choices is None or self.gold is None):
            raise ValueError(f"task {self.name!r}: mode 'ppl' needs `choices` and `gold`")
        if self.mode == "gen" and self.gold is None:
            raise ValueError(f"task {self.name!r}: mode 'gen' needs `gold`")
        if self.mode == "code" and self.program is None:
            raise ValueError(f"task {self.name!r}: mode 'code' needs `program`")
        if self.fewshot not in ("first_n", "random"):
            raise ValueError(f"task {self.name!r}: fewshot={self.fewshot!r}, expected 'first_n' or 'random'")
        if self.mode == "code" and max(self.ks) > self.samples:
            raise ValueError(f"task {self.name!r}: pass@{max(self.ks)} needs samples >= {max(self.ks)}")

    # ---- rendering ----------------------------------------------------------------------------

    def shot_text(self, doc: dict) -> str:
        """A solved few-shot example: its query, the delimiter and its answer."""
        if self.answer is not None:
            answer = render(self.answer, doc)
        elif self.choices is not None:
            answer = self.choices(doc)[int(self.gold(doc))]
        else:
            answer = str(self.gold(doc))
        return render(self.query, doc) + self.target_delimiter + answer

    def prompt(self, doc: dict, shots: list[dict]) -> str:
        """description + shots (each followed by the few-shot delimiter) + the query."""
        parts = [render(self.description, doc)]
        parts += [self.shot_text(s) + self.fewshot_delimiter for s in shots]
        parts.append(render(self.query, doc))
        return "".join(parts)

    def select_shots(self, doc: dict, index: int, pool: list[dict], pool_is_docs: bool) -> list[dict]:
        """The few-shot examples for `doc`; when they come from the evaluated docs themselves, an
        item never serves as its own example."""
        if self.num_fewshot == 0:
            return []
        key = self._id(doc, index)
        candidates = [d for j, d in enumerate(pool) if not (pool_is_docs and self._id(d, j) == key)]
        if self.group is not None:
            g = self.group(doc)
            candidates = [d for d in candidates if self.group(d) == g]
        if self.fewshot == "first_n":
            return candidates[: self.num_fewshot]
        rng = random.Random(f"{self.fewshot_seed}:{key}")
        return rng.sample(candidates, min(self.num_fewshot, len(candidates)))

    def _id(self, doc: dict, index: int) -> str:
        return str(self.doc_id(doc)) if self.doc_id is not None else str(index)

    def examples(self, limit: int | None = None) -> list[Example]:
        """The rendered items, the first `limit` of them (per group with `limit_per_group`)."""
        docs = self.docs()
        indexed = list(enumerate(docs))
        if limit is not None:
            if self.limit_per_group and self.group is not None:
                seen: dict[str, int] = {}
                kept = []
                for i, d in indexed:
                    g = self.group(d)
                    if seen.get(g, 0) < limit:
                        seen[g] = seen.get(g, 0) + 1
                        kept.append((i, d))
                indexed = kept
            else:
                indexed = indexed[:limit]
        pool = self.fewshot_docs() if self.fewshot_docs is not None else docs
        out = []
        for i, doc in indexed:
            shots = self.select_shots(doc, i, pool, pool_is_docs=self.fewshot_docs is None)
            ex = Example(id=self._id(doc, i), prompt=self.prompt(doc, shots), gold=None,
                         group=self.group(doc) if self.group else None, doc=doc)
            if self.mode == "ppl":
                ex.choices = list(self.choices(doc))
                ex.gold = int(self.gold(doc))
                if not 0 <= ex.gold < len(ex.choices):
                    raise ValueError(f"task {self.name!r}, item {ex.id}: gold index {ex.gold} is outside "
                                     f"its {len(ex.choices)} choices")
            elif self.gold is not None:
                ex.gold = self.gold(doc)
            if self.reference is not None:
                ex.reference = self.reference(doc)
            out.append(ex)
        return out
