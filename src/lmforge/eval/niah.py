"""Needle-in-a-Haystack, NeedleBench style.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9.

A haystack of real text (English: the Python documentation's prose; Chinese: People's Daily
1998) is cut to a context length measured in the model's tokens; a needle - a sentence stating
a fact that appears nowhere else - is inserted at a depth of 0..100%, backing up to the nearest
sentence end; the prompt ends with a question about the fact (`lmforge.eval.haystack` builds
the prompts). The grid is lengths x depths (up to the model's window and beyond it, where
dynamic NTK stretches RoPE), each cell repeated with different needles and haystack offsets.
Scoring: 100 when the answer appears in the completion, otherwise edit-distance partial credit
(lmforge.eval.metrics.needle_score). The output is a JSON of every cell and item and a
red -> green depth x length heatmap with the average.

`kind="passkey"` swaps in the pass-key task (lmforge.eval.passkey) that a tiny model can learn,
and also records the log-likelihood of the right answer, which moves before exact retrieval does.
`variant="multi_needle"` / `"multi_hop"` runs NeedleBench's multi-needle retrieval and reasoning
instead (lmforge.eval.niah_multi), on any of the three haystacks.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lmforge.eval import passkey
from lmforge.eval.haystack import KINDS, build_prompt, haystack_source
from lmforge.eval.heatmap import plot_heatmap
from lmforge.eval.lm import LanguageModel
from lmforge.eval.metrics import mean, needle_score
from lmforge.eval.multi_needles import EN_ITEMS, EN_NAMES, ZH_ITEMS, ZH_NAMES
from lmforge.eval.niah_multi import HOPS, NEEDLE_COUNT, VARIANTS, cell_means, run_niah_variant
from lmforge.generate import SamplingParams

# The defaults of `lmforge eval niah` and of the functions here (a recipe's [eval] section sets
# its own, smaller grid for `lmforge run`).
DEPTHS = 11  # NeedleBench's 0, 10, 21, ..., 94, 100
REPEATS = 3  # needles per cell
MAX_NEW_TOKENS = 16
SEED = 0

# The first names and items of the multi-needle pools: single-needle grids draw what they always did.
_EN_NAMES, _EN_ITEMS, _ZH_NAMES, _ZH_ITEMS = EN_NAMES[:10], EN_ITEMS[:6], ZH_NAMES[:8], ZH_ITEMS[:6]
# Needle templates: (fact, question, answer) with slots filled at random per repeat.
NEEDLES = {
    "en": [("The secret ingredient of {name}'s famous soup is {item}.",
            "What is the secret ingredient of {name}'s famous soup?", "{item}"),
           ("The password to {name}'s treasure chest is {number}.",
            "What is the password to {name}'s treasure chest?", "{number}")],
    "zh": [("{name}的秘密配方里最重要的材料是{item}。", "{name}的秘密配方里最重要的材料是什么？", "{item}"),
           ("{name}宝箱的密码是{number}。", "{name}宝箱的密码是多少？", "{number}")],
}


@dataclass
class Needle:
    text: str
    question: str
    answer: str


def make_needle(kind: str, rng: random.Random) -> Needle:
    if kind == "passkey":
        text, answer = passkey.needle(passkey.random_key(rng))
        return Needle(text.strip(), passkey.QUESTION, answer)
    names, items = (_EN_NAMES, _EN_ITEMS) if kind == "en" else (_ZH_NAMES, _ZH_ITEMS)
    fact, question, answer = rng.choice(NEEDLES[kind])
    slots = {"name": rng.choice(names), "item": rng.choice(items), "number": str(rng.randrange(10_000, 100_000))}
    return Needle(fact.format(**slots), question.format(**slots), answer.format(**slots))


def depth_grid(n: int = DEPTHS) -> list[int]:
    """NeedleBench's depths: n points from 0 to 100 (n = 11 gives 0, 10, 21, 31, ..., 94, 100)."""
    if n < 2:
        return [0]
    step = 100 / (2 * (n - 1) - 1)
    return [int(2 * i * step) for i in range(n - 1)] + [100]


def run_niah(lm: LanguageModel, tokenizer, *, lengths: Sequence[int], depths: Sequence[float] | None = None,
             repeats: int = REPEATS, kind: str = "en", max_new_tokens: int = MAX_NEW_TOKENS, seed: int = SEED,
             out_dir: str | Path | None = None, window: int | None = None,
             answer_logprob: bool | None = None, variant: str = "single", needles: int = NEEDLE_COUNT,
             hops: Sequence[int] = HOPS) -> dict:
    """Score `lm` on the lengths x depths grid; writes niah_<kind>.json and .png into out_dir.

    variant: "single" (one needle), "multi_needle" (`needles` facts, all asked for) or
    "multi_hop" (chains of each length in `hops`); the latter two write niah_<kind>_<variant>.*."""
    if kind not in KINDS:
        raise ValueError(f"NIAH kind {kind!r}: expected one of {KINDS}")
    depths = list(depths) if depths is not None else depth_grid()
    if variant != "single":
        return run_niah_variant(lm, tokenizer, variant=variant, lengths=lengths, depths=depths, repeats=repeats,
                                kind=kind, needles=needles, hops=hops, seed=seed, out_dir=out_dir, window=window,
                                max_new_tokens=max_new_tokens)
    answer_logprob = kind == "passkey" if answer_logprob is None else answer_logprob
    rng = random.Random(seed)
    items = []
    for length in lengths:
        for depth in depths:
            for r in range(repeats):
                needle = make_needle(kind, rng)
                prompt = build_prompt(tokenizer, kind, needle.text, needle.question, length, depth,
                                      offset=rng.randrange(len(haystack_source(kind))))
                items.append({"length": length, "depth": depth, "repeat": r, "needle": needle.text,
                              "answer": needle.answer, "prompt": prompt})
    stop = ("\n",) if kind != "passkey" else ("\n", ".")
    completions = lm.generate([it["prompt"] for it in items],
                              SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, stop_strings=stop),
                              truncate=False)
    logprobs = [(None, None)] * len(items)
    if answer_logprob:  # over the whole prompt: a model's scoring window must not cut it
        longest = max(len(tokenizer.encode(it["prompt"])) for it in items) + 64
        with _window_at_least(lm, longest):
            logprobs = lm.loglikelihood([(it["prompt"], " " + it["answer"]) for it in items])
    for it, text, (lp, _) in zip(items, completions, logprobs):
        it.update(completion=text, score=needle_score(text, it["answer"]), exact=float(it["answer"] in text),
                  prompt_tokens=len(tokenizer.encode(it["prompt"])) + 1, answer_logprob=lp)
    grid = cell_means(items, "depth", depths, lengths)
    exact = cell_means(items, "depth", depths, lengths, "exact")
    result = {"kind": kind, "model": getattr(lm, "name", "model"), "lengths": list(lengths), "depths": depths,
              "repeats": repeats, "window": window, "scores": grid, "exact": exact,
              "average": mean([it["score"] for it in items]), "exact_average": mean([it["exact"] for it in items]),
              "items": [{k: v for k, v in it.items() if k != "prompt"} for it in items]}
    if answer_logprob:
        result["answer_logprob_by_length"] = {
            str(n): mean([it["answer_logprob"] for it in items if it["length"] == n]) for n in lengths}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"niah_{kind}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
        result["heatmap"] = str(plot_heatmap(grid, depths, lengths, out / f"niah_{kind}.png",
                                             f"{result['model']}: needle in a haystack ({kind})", window))
    return result


@contextlib.contextmanager
def _window_at_least(lm: LanguageModel, tokens: int):
    """Let a model that truncates long inputs to `max_length` (LmforgeLM) see `tokens` for a while."""
    before = getattr(lm, "max_length", None)
    if before is not None and before < tokens:
        lm.max_length = tokens
    try:
        yield
    finally:
        if before is not None:
            lm.max_length = before


def run_niah_checkpoint(checkpoint: str | Path, *, kinds: Sequence[str] = KINDS, lengths: Sequence[int] | None = None,
                        depths: int = DEPTHS, repeats: int = REPEATS, out: str | Path | None = None,
                        tokenizer: str | Path | None = None, device: str = "auto",
                        max_new_tokens: int = MAX_NEW_TOKENS, seed: int = SEED, variant: str = "single",
                        needles: int = NEEDLE_COUNT, hops: Sequence[int] = HOPS) -> dict:
    """`lmforge eval niah`: the grid on a checkpoint (default lengths: 1/4, 1/2, 1 and 2 x its window)."""
    if variant not in ("single",) + VARIANTS:
        raise ValueError(f"NIAH variant {variant!r}: expected one of {('single',) + VARIANTS}")
    from lmforge.eval.lm import load_lm

    checkpoint = Path(checkpoint)
    lm = load_lm(checkpoint, tokenizer=tokenizer, device=device)
    window = lm.model.cfg.max_seq_len
    lengths = list(lengths) if lengths else [window // 4, window // 2, window, 2 * window]
    out = Path(out) if out is not None else checkpoint.resolve().parent / "eval" / checkpoint.name
    results = {}
    for kind in kinds:
        r = run_niah(lm, lm.tokenizer, lengths=lengths, depths=depth_grid(depths), repeats=repeats, kind=kind,
                     max_new_tokens=max_new_tokens, seed=seed, out_dir=out, window=window, variant=variant,
                     needles=needles, hops=hops)
        print(f"NIAH {kind} {variant}: average {r['average']:.1f}, exact {100 * r['exact_average']:.1f}% "
              f"-> {r['heatmap']}")
        results[kind] = r
    return results
