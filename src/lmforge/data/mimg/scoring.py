"""QA scoring, the step the public LongMIT code leaves out: is an answer supported by its sources,
does a merged question really use every hop, and (optionally) what a judge model thinks of it.

Paper: LongMIT / MIMG, arXiv 2409.01893 (the paper rates quality, multi-hop-ness and diversity of
samples with a judge; its released pipeline has no scoring stage); docs/papers.md §8.

Two lexical scores, free and deterministic, computed on every QA:

* `grounding(answer, sources)`: the share of the answer's distinct content words (normalised words,
  characters for Chinese, less a short stop-word list) that occur in the source chunks. A
  hallucinated answer brings words the sources do not have. Single-hop answers are scored against
  their chunk, merged answers against all the chunks they were built from.
* `hop_coverage(text, hop_answers)`: the share of the single-hop (short) answers whose content
  words are at least half present in the merged question + answer. A merger that dropped a hop
  made a single-hop question; multi-hop-ness is what MIMG is for.

And one model score, when asked for (`judge=True` in the pipeline): `judge_prompt` shows the
sources, question and answer and asks for 1-10; `parse_score` reads the first integer 1-10.
`failed_threshold` turns the scores into a drop reason, or "" to keep.
"""

from __future__ import annotations

import re

from lmforge.data.text import shingle_units

STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those there here which who whom whose what when where why how than then so not no do does did has "
    "have had will would can could should may might must i you he she we they them his her their our your my "
    "me us also into about over after before between both each more most other some such only own same very "
    # the connectives of a merged answer's reasoning, which no source needs to contain
    "first second third finally therefore thus hence because since while whereas answer question".split())


def content_words(text: str) -> set[str]:
    """Distinct normalised words (characters for Chinese) that are not stop words."""
    return {u for u in shingle_units(text) if u not in STOPWORDS}


def grounding(answer: str, sources: list[str]) -> float:
    """Share of the answer's content words found in the sources (0 for an answer without any)."""
    words = content_words(answer)
    if not words:
        return 0.0
    found = set().union(*(content_words(s) for s in sources)) if sources else set()
    return len(words & found) / len(words)


def hop_coverage(text: str, hop_answers: list[str], enough: float = 0.5) -> float:
    """Share of hop answers with at least `enough` of their content words in `text`."""
    if not hop_answers:
        return 0.0
    return sum(grounding(a, [text]) >= enough for a in hop_answers) / len(hop_answers)


def judge_prompt(sources: list[str], question: str, answer: str) -> list[dict[str, str]]:
    passages = "\n\n".join(f"Passage {i}:\n{s}" for i, s in enumerate(sources, 1))
    return [{"role": "system", "content": "You grade question-answer pairs strictly."},
            {"role": "user", "content": f"{passages}\n\nQuestion: {question}\nAnswer: {answer}\n\n"
             "Rate this pair from 1 to 10: 10 when the question is clear, needs facts from more than one "
             "passage, and the answer is correct and fully supported by the passages; 1 when the answer is "
             "wrong or unsupported. Reply with the number only."}]


def parse_score(text: str | None) -> tuple[int | None, str]:
    """(score 1-10, "") from the first integer 1-10 in the text, else (None, reason)."""
    if not text or not text.strip():
        return None, "empty answer"
    match = re.search(r"(?<![\d.])(10|[1-9])(?![\d.]\d)", text)
    return (int(match.group(1)), "") if match else (None, "unparseable")


def failed_threshold(scores: dict[str, float | None], minimum: dict[str, float]) -> str:
    """The first score below its minimum as a drop reason ("grounding < 0.5"), or "" when all pass."""
    for name, low in minimum.items():
        value = scores.get(name)
        if value is not None and value < low:
            return f"{name} < {low:g}"
    return ""
