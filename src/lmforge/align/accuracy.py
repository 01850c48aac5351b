"""Task accuracy of a chat model: greedy answers to held-out checkable tasks from the inference
engine (the one the server and RL rollouts use), each judged by its task's checker. What SFT reports
before and after, and what RL will report per step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from lmforge.align.tasks import Example, check


def generate_answers(model, tokenizer, prompts: Sequence[list[dict]], max_new_tokens: int,
                     temperature: float = 0.0, seed: int = 0) -> list[str]:
    """One assistant answer per prompt (a list of messages), batched by the engine, in order."""
    from lmforge.generate import SamplingParams
    from lmforge.generate.engine import Engine
    from lmforge.inference import with_stop_ids

    params = with_stop_ids(SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed),
                           tokenizer)
    ids = [tokenizer.encode_chat(p, add_generation_prompt=True) for p in prompts]
    longest = max((len(i) for i in ids), default=0) + max_new_tokens
    engine = Engine(model, tokenizer, kv_blocks=max(64, 2 * 32 * -(-longest // 16)), block_size=16, max_batch=32)
    order = {engine.add(p, params, request_id=str(i)).id: i for i, p in enumerate(ids)}
    out: dict[int, list[int]] = {i: [] for i in range(len(ids))}
    for event in engine.run():
        if event.token_id is not None and event.token_id not in params.stop_token_ids:
            out[order[event.request_id]].append(event.token_id)
    return [tokenizer.decode(out[i], skip_special_tokens=True).strip() for i in range(len(ids))]


@torch.no_grad()
def task_accuracy(model, tokenizer, examples: Sequence[Example], max_new_tokens: int = 24,
                  system: str | None = None) -> dict:
    """{"accuracy": {task: share correct, "all": ...}, "verdicts": {task: {verdict: n}}, "samples": [...]}."""
    prompts = [ex.messages(system)[:-1] for ex in examples]
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens)
    verdicts: dict[str, Counter] = {}
    for ex, answer in zip(examples, answers):
        verdicts.setdefault(ex.task, Counter())[check(ex, answer)] += 1
    accuracy = {task: c["correct"] / sum(c.values()) for task, c in verdicts.items()}
    accuracy["all"] = sum(c["correct"] for c in verdicts.values()) / max(len(examples), 1)
    samples = [{"task": ex.task, "prompt": ex.prompt, "answer": a, "reference": ex.answer, "verdict": check(ex, a)}
               for ex, a in list(zip(examples, answers))[:12]]
    return {"accuracy": accuracy, "verdicts": {t: dict(c) for t, c in verdicts.items()}, "samples": samples,
            "answers": answers}
