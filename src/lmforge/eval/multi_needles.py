"""Needles for NeedleBench's multi-needle tasks: what to hide, where, what to ask, how to score.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9; the
tasks are those of NeedleBench (OpenCompass, arXiv 2407.11963), which the report's NIAH uses.

- Multi-needle retrieval (NeedleBench's M-RT): `n` unrelated facts about different people (or,
  for the pass-key haystack, pass keys of doors of different colours); the question asks for all
  of them in order; the score is the share of the answers found in the completion (NeedleBench
  scores each needle by whether its keyword is in the prediction).
- Multi-hop reasoning (NeedleBench's M-RS / Ancestral Trace Challenge): a chain of `hops` facts
  "B is the father of A", "C is the mother of B", ...; the question asks for the earliest
  ancestor of A that the document traces, which only the last fact names, and which is reached
  only by following every link (the facts are shuffled, so reading order does not give it away).
  The pass-key version chains doors ("the red door opens with the pass key of the blue door")
  to one door's key, beside a decoy door with another key. Scoring is exact: the completion must
  name the answer and no other name (or key) of the chain.
- Depths: NeedleBench's layout - the first needle at the grid's depth, each next one `gap`
  percent of the haystack further (its `diff`, 10 by default), stopping at 100%.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

GAP = 10  # percent of the haystack between consecutive needles (NeedleBench's `diff`)

EN_NAMES = ["Ada", "Boris", "Chloe", "Darius", "Elena", "Farid", "Greta", "Hiro", "Imani", "Jonas", "Kenji",
            "Lucia", "Mateo", "Nadia", "Oskar", "Priya"]
ZH_NAMES = ["张伟", "李娜", "王芳", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "周婷", "吴斌", "徐丽", "孙浩"]
EN_ITEMS = ["purple basil", "smoked paprika", "wild fennel", "black garlic", "lemon myrtle", "star anise",
            "pink pepper", "dried lime"]
ZH_ITEMS = ["桂花", "陈皮", "花椒", "枸杞", "八角", "山楂", "茴香", "豆蔻"]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple", "silver", "golden"]

# (fact, question, what the value is) per language; slots: name, value.
RETRIEVAL_FACTS = {
    "en": [("The password to {name}'s treasure chest is {value}.", "What is the password to {name}'s treasure chest?",
            "number"),
           ("The secret ingredient of {name}'s famous soup is {value}.",
            "What is the secret ingredient of {name}'s famous soup?", "item")],
    "zh": [("{name}宝箱的密码是{value}。", "{name}宝箱的密码是多少？", "number"),
           ("{name}的秘密配方里最重要的材料是{value}。", "{name}的秘密配方里最重要的材料是什么？", "item")],
}
RETRIEVAL_TAIL = {"en": " Answer the {n} questions in order, separated by commas.",
                  "zh": "请按顺序回答这{n}个问题，用逗号分隔。"}
PARENT = {"en": ("{parent} is the {role} of {child}.", ("father", "mother")),
          "zh": ("{parent}是{child}的{role}。", ("父亲", "母亲"))}
ANCESTOR_QUESTION = {"en": "Based on the family records in the document, who is the earliest ancestor of {name} "
                           "that can be traced?",
                     "zh": "根据文档中的家族记录，{name}能追溯到的最早的祖先是谁？"}


@dataclass
class NeedleSet:
    """Facts to hide (in insertion order, shallowest first), the question and the answers.

    Retrieval: one answer per fact, in the question's order. Reasoning: one answer, the end of
    `chain` (the entities from the one asked about to the answer); `others` are the chain's
    names that are not the answer, which an exact answer must not mention."""

    texts: list[str]
    question: str
    answers: list[str]
    chain: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)


def _key(rng: random.Random, taken: set[str]) -> str:
    while (key := str(rng.randrange(10_000, 100_000))) in taken:
        pass
    taken.add(key)
    return key


def retrieval_needles(kind: str, n: int, rng: random.Random) -> NeedleSet:
    """`n` facts about `n` different people (or doors), asked for all at once, in this order."""
    names, items = (EN_NAMES, EN_ITEMS) if kind == "en" else (ZH_NAMES, ZH_ITEMS)
    most = len(COLORS) if kind == "passkey" else min(len(names), len(items))
    if not 1 <= n <= most:
        raise ValueError(f"multi-needle {kind}: 1 to {most} needles, got {n}")
    if kind == "passkey":
        doors, taken = rng.sample(COLORS, n), set()
        keys = [_key(rng, taken) for _ in doors]
        texts = [f"The pass key for the {d} door is {k}. Remember it." for d, k in zip(doors, keys)]
        listed = ", ".join(f"the {d} door" for d in doors)
        return NeedleSet(texts, f"What are the pass keys for {listed}, in that order? The pass keys are", keys)
    people, spices, taken = rng.sample(names, n), rng.sample(items, n), set()
    texts, questions, answers = [], [], []
    for person, spice in zip(people, spices):
        fact, question, slot = rng.choice(RETRIEVAL_FACTS[kind])
        value = spice if slot == "item" else _key(rng, taken)
        texts.append(fact.format(name=person, value=value))
        questions.append(question.format(name=person))
        answers.append(value)
    sep = " " if kind == "en" else ""
    return NeedleSet(texts, sep.join(questions) + RETRIEVAL_TAIL[kind].format(n=n), answers)


def reasoning_chain(kind: str, hops: int, rng: random.Random) -> NeedleSet:
    """`hops` linked facts whose end answers the question only through every link; the facts are
    shuffled (the pass-key version adds a decoy door with its own key)."""
    if hops < 1:
        raise ValueError(f"multi-hop needs at least 1 hop, got {hops}")
    if kind == "passkey":
        if hops + 1 > len(COLORS):
            raise ValueError(f"multi-hop passkey: at most {len(COLORS) - 1} hops, got {hops}")
        doors, taken = rng.sample(COLORS, hops + 1), set()  # the last one is the decoy
        key, decoy = _key(rng, taken), _key(rng, taken)
        texts = [f"The {doors[i]} door opens with the pass key of the {doors[i + 1]} door." for i in range(hops - 1)]
        texts += [f"The pass key for the {doors[hops - 1]} door is {key}.", f"The pass key for the {doors[hops]} door "
                  f"is {decoy}."]
        rng.shuffle(texts)
        question = f"What is the pass key for the {doors[0]} door? The pass key for the {doors[0]} door is"
        return NeedleSet(texts, question, [key], chain=doors[:hops] + [key], others=[decoy])
    names = EN_NAMES if kind == "en" else ZH_NAMES
    if hops + 1 > len(names):
        raise ValueError(f"multi-hop {kind}: at most {len(names) - 1} hops, got {hops}")
    chain = rng.sample(names, hops + 1)  # chain[0] is asked about, chain[-1] is the answer
    template, roles = PARENT[kind]
    texts = [template.format(parent=chain[i + 1], child=chain[i], role=rng.choice(roles)) for i in range(hops)]
    rng.shuffle(texts)
    return NeedleSet(texts, ANCESTOR_QUESTION[kind].format(name=chain[0]), [chain[-1]], chain=chain,
                     others=chain[:-1])


def needle_depths(first: float, n: int, gap: float = GAP) -> list[float]:
    """NeedleBench's layout: the first needle at `first` percent, each next `gap` percent further."""
    return [min(first + i * gap, 100.0) for i in range(n)]


def retrieval_score(completion: str, answers: list[str]) -> tuple[float, list[bool]]:
    """(100 x the share of answers found in the completion, which ones were found)."""
    found = [a in completion for a in answers]
    return 100.0 * sum(found) / len(found), found


def reasoning_score(completion: str, needles: NeedleSet) -> float:
    """100 when the completion names the answer and none of the chain's other names, else 0."""
    answer = needles.answers[0]
    named_others = any(other in completion for other in needles.others if other not in answer)
    return 100.0 if answer in completion and not named_others else 0.0
