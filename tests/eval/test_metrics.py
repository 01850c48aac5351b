"""The scoring maths against formulas and brute force."""

import itertools
import math

import pytest

from lmforge.edit_distance import levenshtein
from lmforge.eval.metrics import argmax_first, choice_predictions, needle_score, pass_at_k


@pytest.mark.parametrize("n,c", [(1, 0), (1, 1), (5, 2), (10, 3), (10, 10), (7, 0)])
def test_pass_at_k_is_the_unbiased_estimator(n, c):
    for k in range(1, n + 1):
        # Brute force: the share of k-subsets of the n samples that contain a passing one.
        samples = [True] * c + [False] * (n - c)
        subsets = list(itertools.combinations(samples, k))
        expected = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
        assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("北京欢迎你", "北京欢迎您") == 1
    assert levenshtein("same", "same") == 0


def test_needle_score_exact_and_partial():
    assert needle_score("It is purple basil, of course.", "purple basil") == 100
    assert needle_score("purple basel", "purple basil") == pytest.approx(100 * (1 - 1 / 11))
    assert needle_score("", "12345") == 0
    assert needle_score("9\nirrelevant", "12345") == pytest.approx(0.0)


def test_choice_predictions_raw_and_per_character():
    # Raw picks the larger log-likelihood; per character favours the long, nearly as likely choice.
    assert choice_predictions([-2.0, -3.0], ["ab", "abcdef"]) == (0, 1)
    assert argmax_first([1.0, 3.0, 3.0]) == 1  # ties go to the first, as numpy.argmax
