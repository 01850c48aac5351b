"""Multi-needle retrieval and multi-hop reasoning NIAH: NeedleBench's M-RT and M-RS grids.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9;
NeedleBench (arXiv 2407.11963) defines the tasks. `lmforge.eval.multi_needles` makes the needles
and scores the answers; this module runs the grid and writes the JSON and the heatmap, as
`lmforge.eval.niah.run_niah` does for one needle (which calls `run_niah_variant` for these).

    multi_needle  `needles` facts in one haystack, the first at the grid's depth and each next
                  10% further; the question asks for all of them; score = share retrieved.
                  Heatmap: depth of the first needle x length, as NeedleBench draws one
                  depth x length map per needle count.
    multi_hop     a chain of k facts (k in `hops`), the first at the grid's depth; score 100
                  for the exact final answer. Heatmap: hops x length (the mean over depths; the
                  JSON keeps a depth x length grid per hop count).

Outputs: niah_<kind>_<variant>.json (every item) and .png in out_dir.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from lmforge.eval.haystack import KINDS, build_prompt, haystack_source
from lmforge.eval.heatmap import plot_heatmap
from lmforge.eval.lm import LanguageModel
from lmforge.eval.metrics import mean
from lmforge.eval.multi_needles import (GAP, needle_depths, reasoning_chain, reasoning_score, retrieval_needles,
                                        retrieval_score)
from lmforge.generate import SamplingParams

VARIANTS = ("multi_needle", "multi_hop")
NEEDLE_COUNT = 3  # multi_needle: facts per haystack (NeedleBench uses 2 to 5)
HOPS = (2, 3, 4)  # multi_hop: chain lengths, one heatmap row each
ANSWER_TOKENS = 16  # new tokens per answer asked for (NIAH's max_new_tokens)


def cell_means(items: list[dict], row_key: str, rows: Sequence, lengths: Sequence[int],
               field: str = "score") -> list[list[float]]:
    """grid[row][length]: the mean of `field` over the items of each (row value, length) cell."""
    return [[mean([it[field] for it in items if it[row_key] == r and it["length"] == n]) for n in lengths]
            for r in rows]


def _items(variant: str, kind: str, tokenizer, lengths: Sequence[int], depths: Sequence[float], repeats: int,
           needles: int, hops: Sequence[int], gap: float, rng: random.Random) -> list[dict]:
    counts = [needles] if variant == "multi_needle" else list(hops)
    count_key = "n_needles" if variant == "multi_needle" else "hops"
    items = []
    for length in lengths:
        for count in counts:
            for depth in depths:
                for r in range(repeats):
                    made = (retrieval_needles(kind, count, rng) if variant == "multi_needle"
                            else reasoning_chain(kind, count, rng))
                    at = needle_depths(depth, len(made.texts), gap)
                    prompt = build_prompt(tokenizer, kind, made.texts, made.question, length, at,
                                          offset=rng.randrange(len(haystack_source(kind))))
                    items.append({"length": length, count_key: count, "depth": depth, "repeat": r,
                                  "needles": made.texts, "needle_depths": at, "question": made.question,
                                  "answers": made.answers, "chain": made.chain, "prompt": prompt, "_set": made})
    return items


def run_niah_variant(lm: LanguageModel, tokenizer, *, variant: str, lengths: Sequence[int], depths: Sequence[float],
                     repeats: int, kind: str = "en", needles: int = NEEDLE_COUNT, hops: Sequence[int] = HOPS,
                     gap: float = GAP, max_new_tokens: int = ANSWER_TOKENS, seed: int = 0,
                     out_dir: str | Path | None = None, window: int | None = None) -> dict:
    """Score `lm` on a multi-needle or multi-hop grid; the result has `heatmap` when out_dir is set.

    max_new_tokens is per answer: multi_needle generates `needles` times as many."""
    if variant not in VARIANTS:
        raise ValueError(f"NIAH variant {variant!r}: expected one of {('single',) + VARIANTS}")
    if kind not in KINDS:
        raise ValueError(f"NIAH kind {kind!r}: expected one of {KINDS}")
    rng = random.Random(seed)
    items = _items(variant, kind, tokenizer, lengths, depths, repeats, needles, hops, gap, rng)
    answers = needles if variant == "multi_needle" else 1
    stop = ("\n",) if kind != "passkey" else ("\n", ".")
    params = SamplingParams(max_new_tokens=max_new_tokens * answers, temperature=0.0, stop_strings=stop)
    completions = lm.generate([it["prompt"] for it in items], params, truncate=False)
    for it, text in zip(items, completions):
        made = it.pop("_set")
        if variant == "multi_needle":
            it["score"], it["found"] = retrieval_score(text, made.answers)
        else:
            it["score"] = reasoning_score(text, made)
        it.update(completion=text, exact=float(it["score"] == 100.0),
                  prompt_tokens=len(tokenizer.encode(it["prompt"])) + 1)
    result = {"kind": kind, "variant": variant, "model": getattr(lm, "name", "model"), "lengths": list(lengths),
              "depths": list(depths), "repeats": repeats, "window": window, "gap": gap,
              "average": mean([it["score"] for it in items]), "exact_average": mean([it["exact"] for it in items])}
    if variant == "multi_needle":
        result.update(needles=needles, scores=cell_means(items, "depth", depths, lengths),
                      exact=cell_means(items, "depth", depths, lengths, "exact"),
                      found_by_needle=[mean([100.0 * it["found"][i] for it in items]) for i in range(needles)])
        rows, labels, ylabel = result["depths"], None, "depth of the first needle"
    else:
        by_depth = {str(h): cell_means([it for it in items if it["hops"] == h], "depth", depths, lengths)
                    for h in hops}
        result.update(hops=list(hops), scores=cell_means(items, "hops", hops, lengths), scores_by_depth=by_depth)
        rows, labels, ylabel = list(hops), [f"{h} hop{'s' if h > 1 else ''}" for h in hops], "hops"
    result["items"] = [{k: v for k, v in it.items() if k != "prompt"} for it in items]
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"niah_{kind}_{variant}"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        title = f"{result['model']}: {variant.replace('_', '-')} NIAH ({kind})"
        result["heatmap"] = str(plot_heatmap(result["scores"], rows, lengths, out / f"{stem}.png", title, window,
                                             row_labels=labels, ylabel=ylabel))
    return result
