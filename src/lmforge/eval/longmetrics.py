"""LongBench's answer metrics, as small pure functions (each scores one prediction in [0, 1]).

Paper: InternLM2 report (its OpenCompass evaluation, which includes LongBench), arXiv
2403.17297; docs/papers.md §9. LongBench (Bai et al. 2023, arXiv 2308.14508) scores a record by
the best score over its reference answers; these follow its definitions:

- `qa_f1`: SQuAD-style token F1 after LongBench's English normalisation (lower case, punctuation
  removed, the articles a/an/the dropped, whitespace collapsed), tokens split on whitespace;
- `qa_f1_zh`: token F1 after its Chinese normalisation (lower case, English and Chinese
  punctuation removed, whitespace removed) on single characters, where LongBench segments with
  jieba (not a dependency here), so values differ slightly from its numbers;
- `rouge_l`: ROUGE-L F1 (longest common subsequence) on the same tokens as `qa_f1` (English) or
  characters (text with CJK characters);
- `exact`: the normalised prediction equals a normalised answer; `contains`: an answer appears
  in the prediction;
- `classification`: LongBench's classification score: of the classes (`all_classes`) named in
  the prediction, dropping those that are only part of the answer, 1 / their number when the
  answer is among them, else 0.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

ZH_PUNCTUATION = ("！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿"
                  "–—‘’‛“”„‟…‧﹏.")
_ALL_PUNCTUATION = set(string.punctuation + ZH_PUNCTUATION)


def normalize_answer(text: str) -> str:
    """LongBench's (and SQuAD's) English normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def normalize_zh_answer(text: str) -> str:
    """LongBench's Chinese normalisation: lower case, no punctuation (either script), no spaces."""
    return "".join(ch for ch in text.lower() if ch not in _ALL_PUNCTUATION and not ch.isspace())


def overlap_f1(common: int, n_prediction: int, n_reference: int) -> float:
    """2PR / (P + R) with P = common / n_prediction, R = common / n_reference; 0 when common is 0."""
    if common == 0:
        return 0.0
    precision, recall = common / n_prediction, common / n_reference
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """F1 of the token multisets (each shared token counted as often as it is in both)."""
    return overlap_f1(sum((Counter(prediction) & Counter(reference)).values()), len(prediction), len(reference))


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _tokens(text: str) -> list[str]:
    return list(normalize_zh_answer(text)) if _has_cjk(text) else normalize_answer(text).split()


def qa_f1(prediction: str, answer: str) -> float:
    return token_f1(normalize_answer(prediction).split(), normalize_answer(answer).split())


def qa_f1_zh(prediction: str, answer: str) -> float:
    return token_f1(list(normalize_zh_answer(prediction)), list(normalize_zh_answer(answer)))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, answer: str) -> float:
    """ROUGE-L F1: LCS / len as precision and recall, their harmonic mean."""
    pred, ref = _tokens(prediction), _tokens(answer)
    return overlap_f1(lcs_length(pred, ref), len(pred), len(ref))


def exact(prediction: str, answer: str) -> float:
    norm = normalize_zh_answer if _has_cjk(answer) else normalize_answer
    return float(norm(prediction) == norm(answer))


def contains(prediction: str, answer: str) -> float:
    return float(answer.strip() in prediction)


def classification(prediction: str, answer: str, all_classes: Sequence[str]) -> float:
    """LongBench's classification score (see the module docstring)."""
    named = [c for c in all_classes if c in prediction]
    named = [c for c in named if not (c in answer and c != answer)]
    return 1.0 / len(named) if answer in named else 0.0


METRICS: dict[str, Callable[..., float]] = {"qa_f1": qa_f1, "qa_f1_zh": qa_f1_zh, "rouge_l": rouge_l,
                                            "exact": exact, "contains": contains, "classification": classification}


def best_score(metric: str, prediction: str, answers: Sequence[str],
               all_classes: Sequence[str] | None = None) -> float:
    """A record's score: the best over its answers, as LongBench scores it."""
    fn = METRICS[metric]
    if metric == "classification":
        return max(fn(prediction, a, all_classes or []) for a in answers)
    return max(fn(prediction, a) for a in answers)
