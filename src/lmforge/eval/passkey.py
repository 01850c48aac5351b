"""Pass-key retrieval: a needle-in-a-haystack that a tiny model can learn (Mohtashami & Jaggi, 2023).

A random number is hidden at some depth of a repetitive filler text, and the prompt ends with
"What is the pass key? The pass key is"; the answer is the number. A model only has to copy five
digits from far back, which a small model trained here can learn, so the long-context stage of
the training issue shows a measurable change on it where NeedleBench's natural-language needles
stay at zero. `passkey_document` writes training examples in exactly the evaluated format (the
prompts of `lmforge.eval.haystack`, which `lmforge.eval.niah` with `kind="passkey"` evaluates).
"""

from __future__ import annotations

import random

from lmforge.eval.haystack import build_prompt

QUESTION = "What is the pass key? The pass key is"


def needle(key: int) -> tuple[str, str]:
    """(the sentence hidden in the filler, the answer)."""
    return f"The pass key is {key}. Remember it. {key} is the pass key. ", str(key)


def random_key(rng: random.Random, digits: int = 5) -> int:
    return rng.randrange(10 ** (digits - 1), 10 ** digits)


def passkey_document(tokenizer, length_tokens: int, rng: random.Random, digits: int = 5) -> str:
    """A training document: a pass-key prompt of about `length_tokens` tokens, at a random depth,
    followed by its answer (the format that `lmforge eval niah --haystack passkey` scores, whose keys
    have 5 digits; longer keys give a training document more digits to copy)."""
    key = random_key(rng, digits)
    text, answer = needle(key)
    prompt = build_prompt(tokenizer, "passkey", text, QUESTION, length_tokens - 4, rng.uniform(0, 100))
    return f"{prompt} {answer}."
