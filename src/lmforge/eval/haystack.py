"""The text around a needle: haystack sources, prompt templates and the prompt builder.

Needle-in-a-Haystack (`lmforge.eval.niah`) evaluates with these prompts and the pass-key
training documents (`lmforge.eval.passkey`) are written with them, so a model trains on exactly
the format it is scored on. Each kind has a haystack and a (header, footer) template:

    en        the Python documentation's prose
    zh        People's Daily 1998
    passkey   a repetitive filler text (Mohtashami & Jaggi, 2023)

A prompt is the header, the haystack cut to a length in the model's tokens with the needle
inserted at a depth of 0..100% (moved back to the nearest sentence end), and the footer with the
question. Multi-needle and multi-hop NIAH (`lmforge.eval.niah_multi`) insert several needles,
each at its own depth, into one haystack.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

KINDS = ("en", "zh", "passkey")
SENTENCE_ENDS = ".!?。！？\n"
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "

TEMPLATES = {
    "en": ("This is a test of long-text capability. Read the document below, then answer the question "
           "that follows it.\n\n", "\n\nQuestion: {question}\nAnswer:"),
    "zh": ("这是一个长文本能力的测试。请阅读下面的文档，然后回答文档后面的问题。\n\n", "\n\n问题：{question}\n回答："),
    "passkey": ("There is an important piece of information hidden inside a lot of irrelevant text. "
                "Find it and memorize it. I will quiz you about it.\n\n", "\n\n{question}"),
}


def passkey_filler(n_chars: int) -> str:
    return (PASSKEY_FILLER * (n_chars // len(PASSKEY_FILLER) + 1))[:n_chars]


@cache
def haystack_source(kind: str) -> str:
    from lmforge import corpora

    if kind == "en":
        return corpora.pydoc_text()
    if kind == "zh":
        return corpora.chinese_news_text(2_000_000)
    return passkey_filler(200_000)


def insert_needle(haystack: str, needle: str, depth: float) -> str:
    """Put `needle` at `depth` percent of `haystack`, moved back to just after a sentence end."""
    return insert_needles(haystack, [needle], [depth])


def insert_needles(haystack: str, needles: Sequence[str], depths: Sequence[float]) -> str:
    """Put each needle at its depth (percent of the haystack as given, each moved back to just
    after a sentence end); needles at the same point keep their order. Multi-needle NIAH uses it."""
    if len(needles) != len(depths):
        raise ValueError(f"{len(needles)} needles but {len(depths)} depths")
    cuts = []
    for depth in depths:
        at = int(len(haystack) * depth / 100)
        while at > 0 and haystack[at - 1] not in SENTENCE_ENDS:
            at -= 1
        cuts.append(at)
    order = sorted(range(len(needles)), key=lambda i: cuts[i])  # stable: equal cuts keep their order
    sep = "" if any("\u4e00" <= ch <= "\u9fff" for n in needles for ch in n) else " "
    parts, start = [], 0
    for i in order:  # the text between needles loses its spaces on the needles' sides only
        text = haystack[start:cuts[i]]
        parts += [text.rstrip(" ") if start == 0 else text.strip(" "), needles[i]]
        start = cuts[i]
    parts.append(haystack[start:].lstrip(" "))
    return sep.join(p for p in parts if p)


def build_prompt(tokenizer, kind: str, needle_text: str | Sequence[str], question: str, length: int,
                 depth: float | Sequence[float], offset: int = 0) -> str:
    """A prompt of about `length` tokens: header, haystack with the needle at `depth`, question.

    Several needles (multi-needle and multi-hop NIAH) come as a list with a list of depths."""
    needles = [needle_text] if isinstance(needle_text, str) else list(needle_text)
    depths = [depth] if isinstance(depth, (int, float)) else list(depth)
    header, footer = TEMPLATES[kind]
    footer = footer.format(question=question)
    fixed = len(tokenizer.encode(header + footer + " ".join(needles))) + 1 + len(needles)  # + BOS, separators
    budget = max(length - fixed, 0)
    source = haystack_source(kind)
    start = offset % len(source)
    while start > 0 and source[start - 1] not in SENTENCE_ENDS:  # begin at a sentence
        start -= 1
    chars = 8 * budget + 64  # more than `budget` tokens of text in any language
    text = (source[start:] + "\n" + source) * (1 + chars // max(len(source), 1))
    hay = tokenizer.decode(tokenizer.encode(text[:chars])[:budget]) if budget else ""
    return header + insert_needles(hay, needles, depths) + footer
