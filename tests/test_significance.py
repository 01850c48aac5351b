"""The paired comparison of two models' verdicts (lmforge.significance) against scipy's exact binomial
test and numpy's moments of the per-prompt differences."""

import random

import numpy as np
import pytest

from lmforge.significance import describe, mcnemar_p, paired_by_task, paired_change


@pytest.mark.parametrize("gained,lost", [(0, 0), (1, 0), (0, 5), (3, 3), (17, 8), (8, 17), (40, 25), (2, 30),
                                         (120, 95)])
def test_mcnemar_p_equals_scipys_exact_binomial_test(gained, lost):
    stats = pytest.importorskip("scipy.stats")
    expected = 1.0 if gained + lost == 0 else stats.binomtest(gained, gained + lost, 0.5).pvalue
    assert mcnemar_p(gained, lost) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_paired_change_counts_the_discordant_prompts_and_its_se_is_that_of_the_mean_difference():
    rng = random.Random(0)
    before = [rng.random() < 0.4 for _ in range(300)]
    after = [b if rng.random() < 0.8 else rng.random() < 0.6 for b in before]
    c = paired_change(before, after)
    d = np.array(after, dtype=float) - np.array(before, dtype=float)
    assert c["n"] == 300
    assert c["gained"] == int((d > 0).sum()) and c["lost"] == int((d < 0).sum())
    assert c["change"] == pytest.approx(d.mean())
    assert c["se"] == pytest.approx(d.std() / np.sqrt(len(d)))
    assert c["before"] == pytest.approx(np.mean(before)) and c["after"] == pytest.approx(np.mean(after))
    assert c["p"] == mcnemar_p(c["gained"], c["lost"])


def test_a_change_too_large_for_chance_gets_a_small_p_and_no_change_gets_one():
    before = [False] * 100
    after = [True] * 15 + [False] * 85
    assert paired_change(before, after)["p"] < 1e-4
    same = [i % 3 == 0 for i in range(50)]
    c = paired_change(same, same)
    assert (c["change"], c["se"], c["p"]) == (0.0, 0.0, 1.0)


def test_by_task_splits_the_prompts_and_adds_all():
    tasks = ["a", "b", "a", "b", "a"]
    before = [True, False, False, True, False]
    after = [True, True, True, False, False]
    out = paired_by_task(tasks, before, after)
    assert list(out) == ["a", "b", "all"]
    assert (out["a"]["n"], out["a"]["gained"], out["a"]["lost"]) == (3, 1, 0)
    assert (out["b"]["n"], out["b"]["gained"], out["b"]["lost"]) == (2, 1, 1)
    assert (out["all"]["gained"], out["all"]["lost"]) == (2, 1)
    assert describe(out["a"]).startswith("+33.3 points (SE ")


def test_verdicts_of_different_prompt_sets_are_refused():
    with pytest.raises(ValueError, match="3 before, 2 after"):
        paired_change([True] * 3, [True] * 2)
