"""Preference pairs labelled by the tasks' checkers instead of people: correct > wrong > malformed
(the ranking COOL RLHF's labellers give; InternLM2 report, arXiv 2403.17297, section 4.2), and the
per-domain system prompts of COOL's conditional reward model, which let one model hold the
preferences of several domains.

For the ensemble demonstration, `biased_pairs` imitates a labeller bias that a reward model can
learn and a policy can exploit: the labeller prefers an answer that restates the question, even a
wrong one, over the plain correct answer. `exploit_pairs` is the held-out probe: a plain correct
answer against a wrong one that restates the question; a reward model that learned the bias
prefers the second.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lmforge.align.conversations import Pair
from lmforge.align.tasks import TASKS, Example

# COOL's condition system prompts, one per domain of the tasks (the report's are "helpful",
# "harmless", "code", "math", ...; ours name what each domain's good answer is).
DOMAIN_PROMPTS = {
    "arithmetic": "Judge arithmetic answers: the exact number or list, and nothing else, is best.",
    "text": "Judge answers to text tasks: the exact transformed text, in the form asked, is best.",
    "format": "Judge answers that must follow a format: valid output in the required form with the right value is best.",
    "language": "Judge short language answers: the exact word or characters asked for is best.",
}


def domain_of(example: Example) -> str:
    return TASKS[example.task].domain


def task_pairs(examples: Sequence[Example], seed: int) -> list[Pair]:
    """Two pairs per example: reference > a wrong answer, and (at random) reference > malformed or
    wrong > malformed."""
    rng = random.Random(seed)
    pairs = []
    for ex in examples:
        task, prompt = TASKS[ex.task], [{"role": "user", "content": ex.prompt}]
        wrong, malformed = task.wrong(ex, rng), task.malformed(ex, rng)
        pairs.append(Pair(prompt, ex.answer, wrong, task.domain))
        second = (ex.answer, malformed) if rng.random() < 0.5 else (wrong, malformed)
        pairs.append(Pair(prompt, *second, task.domain))
    return pairs


def restated(example: Example, answer: str) -> str:
    """An answer that restates the question first (the feature a biased labeller rewards)."""
    return f"{example.prompt} {answer}"


def biased_pairs(examples: Sequence[Example], seed: int, share: float = 0.5) -> list[Pair]:
    """Pairs from a biased labeller for a `share` of the examples: a wrong answer that restates the
    question is preferred to the plain correct one."""
    rng = random.Random(seed + 1)
    out = []
    for ex in examples:
        if rng.random() < share:
            task = TASKS[ex.task]
            out.append(Pair([{"role": "user", "content": ex.prompt}], restated(ex, task.wrong(ex, rng)), ex.answer,
                            task.domain))
    return out


def exploit_pairs(examples: Sequence[Example], seed: int) -> list[Pair]:
    """Held-out probe: the plain correct answer (chosen) against a wrong one restating the question."""
    rng = random.Random(seed + 2)
    return [Pair([{"role": "user", "content": ex.prompt}], ex.answer, restated(ex, TASKS[ex.task].wrong(ex, rng)),
                 domain_of(ex)) for ex in examples]


def conditioned(prompt: list[dict], answer: str, domain: str) -> list[dict]:
    """The conversation a conditional reward model scores: the domain's system prompt (replacing any
    system message), the prompt, the answer."""
    system = DOMAIN_PROMPTS.get(domain)
    turns = [m for m in prompt if m["role"] != "system"] if system else list(prompt)
    head = [{"role": "system", "content": system}] if system else []
    return [*head, *turns, {"role": "assistant", "content": answer}]


def plain(prompt: list[dict], answer: str, domain: str = "") -> list[dict]:
    return [*prompt, {"role": "assistant", "content": answer}]
