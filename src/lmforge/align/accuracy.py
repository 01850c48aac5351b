"""Task accuracy of a chat model: greedy answers to held-out checkable tasks from the inference
engine (the one the server and RL rollouts use), each judged by its task's checker. What SFT reports
before and after, and what RL will report per step. Also pass@k: whether any of k sampled answers is
right, the ceiling that RL, which reinforces what the sampler already finds, can raise greedy
accuracy towards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from lmforge.align.tasks import Example, check, share_by_task


def generate_answers(model, tokenizer, prompts: Sequence[list[dict]], max_new_tokens: int,
                     temperature: float = 0.0, group: int = 1, seed: int = 0) -> list[str]:
    """`group` answers per prompt (a list of messages), prompt by prompt, from a fresh engine over
    `model` (lmforge.align.rollout: answer n samples with seed + n)."""
    from lmforge.align.rollout import rollout
    from lmforge.generate.engine import Engine

    ids = [tokenizer.encode_chat(p, add_generation_prompt=True) for p in prompts]
    longest = max((len(i) for i in ids), default=0) + max_new_tokens
    engine = Engine(model, tokenizer, kv_blocks=max(64, 2 * 32 * -(-longest // 16)), block_size=16, max_batch=32)
    return [r.text for r in rollout(engine, tokenizer, prompts, group, max_new_tokens, temperature, seed=seed,
                                    prompt_ids=ids)]


def most_common_answer_share(examples: Sequence[Example]) -> dict[str, float]:
    """Per task (and "all"), the share of prompts whose reference is the task's most common one: what
    a model that gives one answer whatever the question scores at best, a task's floor. A figure near
    it is no skill (RL once reached `count`'s 63% by answering "1" to everything)."""
    refs: dict[str, Counter] = {}
    for ex in examples:
        refs.setdefault(ex.task, Counter())[ex.answer] += 1
    tops = {task: c.most_common(1)[0][1] for task, c in refs.items()}
    share = {task: tops[task] / sum(c.values()) for task, c in refs.items()}
    share["all"] = sum(tops.values()) / max(len(examples), 1)
    return share


@torch.no_grad()
def task_accuracy(model, tokenizer, examples: Sequence[Example], max_new_tokens: int = 24,
                  system: str | None = None) -> dict:
    """{"accuracy": {task: share correct, "all": ...}, "verdicts": {task: {verdict: n}}, "samples": [...],
    "answers": [...], "correct": [bool per example] (for paired comparisons, lmforge.significance),
    "one_answer": {task: the most common reference's share}}."""
    prompts = [ex.messages(system)[:-1] for ex in examples]
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens)
    judged = [check(ex, a) for ex, a in zip(examples, answers)]
    verdicts: dict[str, Counter] = {}
    for ex, verdict in zip(examples, judged):
        verdicts.setdefault(ex.task, Counter())[verdict] += 1
    accuracy = {task: c["correct"] / sum(c.values()) for task, c in verdicts.items()}
    accuracy["all"] = sum(c["correct"] for c in verdicts.values()) / max(len(examples), 1)
    samples = [{"task": ex.task, "prompt": ex.prompt, "answer": a, "reference": ex.answer, "verdict": v}
               for ex, a, v in list(zip(examples, answers, judged))[:12]]
    return {"accuracy": accuracy, "verdicts": {t: dict(c) for t, c in verdicts.items()}, "samples": samples,
            "answers": answers, "correct": [v == "correct" for v in judged],
            "one_answer": most_common_answer_share(examples)}


@torch.no_grad()
def task_pass_at_k(model, tokenizer, examples: Sequence[Example], k: int, temperature: float,
                   max_new_tokens: int = 24, system: str | None = None, seed: int = 0) -> dict[str, float]:
    """Per task (and "all"), the share of prompts that at least one of `k` answers sampled at
    `temperature` gets right (pass@k from n = k samples; at temperature 0 every answer is the greedy
    one, so this is greedy accuracy)."""
    prompts = [ex.messages(system)[:-1] for ex in examples]
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens, temperature, group=k, seed=seed)
    return share_by_task(examples, [any(check(ex, a) == "correct" for a in answers[i * k:(i + 1) * k])
                                    for i, ex in enumerate(examples)])
