"""Stub models for the scorer tests: an oracle that always answers right, a constant answerer."""

from lmforge.eval.task import Task
from lmforge.generate import SamplingParams


class OracleLM:
    """Knows every item: the gold choice gets log-likelihood 0 (the others -1000), a generation
    prompt gets the item's reference completion."""

    name, fingerprint, max_length = "oracle", "oracle" * 8, None

    def __init__(self, tasks: list[Task], limit: int | None = None):
        self.gold, self.reference = set(), {}
        for task in tasks:
            for ex in task.examples(limit):
                if task.mode == "ppl":
                    self.gold.add((ex.prompt, task.target_delimiter + ex.choices[ex.gold]))
                else:
                    self.reference[ex.prompt] = ex.reference

    def loglikelihood(self, requests, progress=None):
        return [(0.0 if r in self.gold else -1000.0, r in self.gold) for r in requests]

    def generate(self, prompts, params: SamplingParams, progress=None, *, truncate=True):
        return [self.reference[p] for p in prompts]


class ConstantLM:
    """The same log-likelihood for every choice (so the first one wins) and the same text for
    every prompt."""

    name, fingerprint, max_length = "constant", "constant" * 8, None

    def __init__(self, text: str = "0"):
        self.text = text
        self.calls = 0

    def loglikelihood(self, requests, progress=None):
        self.calls += len(requests)
        return [(-1.0, False) for _ in requests]

    def generate(self, prompts, params: SamplingParams, progress=None, *, truncate=True):
        self.calls += len(prompts)
        return [self.text for _ in prompts]
