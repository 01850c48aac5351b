"""Scoring maths, as small pure functions.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9.

- multiple choice: the most likely choice (`acc`) and the most likely per character of the choice
  (`acc_norm`, lm-evaluation-harness's length normalisation), ties going to the first choice;
- pass@k with the unbiased estimator of Chen et al. 2021 (HumanEval paper, eq. 1):
  `1 - C(n - c, k) / C(n, k)` for n samples of which c pass;
- NeedleBench's score: 100 when the answer appears in the prediction, otherwise partial credit
  `100 * (1 - edit_distance / max(len))` between the prediction and the answer;
- numeric answers (GSM8K, task files' `last_number` / `number`): the number after "the answer
  is", else the last number of the text, compared as numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from lmforge.edit_distance import levenshtein


def argmax_first(values: Sequence[float]) -> int:
    """Index of the largest value, the first one on ties (as numpy.argmax)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def choice_predictions(logliks: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(raw prediction, length-normalised prediction) from per-choice log-likelihoods.

    The normalisation divides by the number of characters of the choice text (without the
    delimiter before it), which is what lm-evaluation-harness's `acc_norm` does.
    """
    normalised = [ll / max(len(c), 1) for ll, c in zip(logliks, choices)]
    return argmax_first(logliks), argmax_first(normalised)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # The product form of the ratio of binomials avoids huge integers (Chen et al., figure 3).
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def needle_score(prediction: str, answer: str) -> float:
    """NeedleBench's score in [0, 100]: 100 if the answer is in the prediction, else partial
    credit by edit distance between the prediction's first line and the answer (whitespace
    removed, so Chinese and English are treated alike)."""
    if answer and answer in prediction:
        return 100.0
    lines = [ln for ln in prediction.strip().splitlines() if ln.strip()]
    pred = "".join(lines[0].split()) if lines else ""
    ref = "".join(answer.split())
    longest = max(len(pred), len(ref))
    if longest == 0:
        return 100.0
    return max(0.0, 100.0 * (1.0 - levenshtein(pred, ref) / longest))


NUMBER = r"-?[\d,]*\.?\d+"


def answer_number(completion: str) -> str:
    """The number after "answer is", else the last number in the text; "" when there is none."""
    m = re.search(rf"answer is\s*\$?\s*({NUMBER})", completion)
    numbers = [m.group(1)] if m else re.findall(NUMBER, completion)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else ""


def same_number(pred: str, gold_answer: object) -> bool:
    try:
        return abs(float(pred) - float(str(gold_answer))) < 1e-6
    except ValueError:
        return False


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
