"""Rollouts for online RL from the one inference engine (lmforge.generate.engine). Colocated with
the trainer, the engine decodes with the very module the trainer updates, so a policy update is
"pushed" by telling the engine its weights changed (`Engine.weights_updated`), with no copy through
disk; Ray rollout workers run this same function on their own engines and copies of the policy,
sent the trainer's weights after each update (lmforge.align.rollout_workers).

Each prompt is answered `group` times; answer i of prompt j samples with seed + j * group + i, from
a generator of its own, so a fixed seed reproduces a rollout whichever engine decodes the answer
and whatever shares its batch. (The batch's make-up still moves fp32 log-probs by ~5e-7 on the
CPU, which could flip a draw that lands that close to a boundary; none did in the tests.)
A completion keeps its end-of-turn token when it stopped on one (the engine reports a stop without
its token; `<|im_end|>` is put back), so the policy is trained to stop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from lmforge.align.chat_rows import Encoded


@dataclass
class Rollout:
    prompt: list[int]  # the rendered prompt's ids (ending with `<|im_start|>assistant\n`)
    completion: list[int]  # the sampled ids, the stop token included when it stopped on one
    text: str  # the answer as a user reads it (no special tokens)
    finish: str  # "stop" or "length"

    def encoded(self) -> Encoded:
        """The row a loss trains on: prompt + completion, the completion in the mask."""
        return Encoded(self.prompt + self.completion, [False] * len(self.prompt) + [True] * len(self.completion))


def rollout(engine, tokenizer, prompts: Sequence[list[dict]], group: int, max_new_tokens: int,
            temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
            prompt_ids: Sequence[list[int]] | None = None) -> list[Rollout]:
    """`group` sampled answers per prompt (a list of messages), prompt by prompt, answer by answer;
    `prompt_ids`: the prompts already encoded with their generation prompt (else encoded here)."""
    from lmforge.generate import SamplingParams
    from lmforge.inference import with_stop_ids

    base = with_stop_ids(SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p),
                         tokenizer)
    stop = tokenizer.stop_ids[-1]  # `<|im_end|>`: the chat format's end of turn
    ids = prompt_ids if prompt_ids is not None else [tokenizer.encode_chat(p, add_generation_prompt=True)
                                                     for p in prompts]
    index = {}
    for j, p in enumerate(ids):
        for i in range(group):
            n = j * group + i
            params = dataclasses.replace(base, seed=seed + n)
            index[engine.add(p, params, request_id=f"rl-{seed}-{n}").id] = n
    out: list[list[int]] = [[] for _ in index]
    finish = ["length"] * len(index)
    for event in engine.run():
        n = index[event.request_id]
        if event.token_id is not None:
            out[n].append(event.token_id)
        if event.finish_reason is not None:
            finish[n] = event.finish_reason
    rollouts = []
    for n, completion in enumerate(out):
        if finish[n] == "stop" and (not completion or completion[-1] not in base.stop_token_ids):
            completion = completion + [stop]
        text = tokenizer.decode([t for t in completion if t not in base.stop_token_ids], skip_special_tokens=True)
        rollouts.append(Rollout(ids[n // group], completion, text.strip(), finish[n]))
    return rollouts
