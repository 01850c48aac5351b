"""The benchmarks' confidence interval for a median (bench/stats.py) against the binomial it is
built from, and the paired ratio's direction (above 1: lmforge faster)."""

import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from stats import median_ci, paired_ratio  # noqa: E402


def _p_below(n, k):
    """P(Binomial(n, 1/2) < k)."""
    return sum(math.comb(n, i) for i in range(k)) / 2**n


def test_median_ci_is_the_widest_sign_test_interval():
    assert median_ci(list(range(5))) is None  # 2 / 32 > 0.025: no 95% interval from 5 draws
    for n in (6, 7, 15, 21, 41, 100):
        values = list(range(1, n + 1))
        lo, hi = median_ci(values)
        k = lo  # values are 1..n, so the k-th smallest is k
        assert hi == n - k + 1
        assert _p_below(n, k) <= 0.025 < _p_below(n, k + 1)
    assert median_ci(list(range(1, 16))) == (4, 12)  # the tabulated n = 15 interval


def test_median_ci_covers_the_median_at_least_95_percent():
    rng = random.Random(0)
    hits = 0
    for _ in range(2000):
        lo, hi = median_ci([rng.expovariate(1.0) for _ in range(15)])
        hits += lo <= math.log(2) <= hi  # the exponential's median
    assert hits / 2000 >= 0.95


def test_paired_ratio_is_throughput_ours_over_theirs():
    assert paired_ratio([1.0] * 7, [1.1] * 7) == "1.10 [1.10, 1.10]"
    assert paired_ratio([2.0, 1.0], [1.0, 0.5], unit="x") == "0.50x"  # too few repeats for an interval
