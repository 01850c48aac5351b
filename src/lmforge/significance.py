"""Whether a change in accuracy is real: two models' verdicts on the *same* prompts, compared pair by
pair (McNemar's exact test).

Before and after RL (or SFT) are scored on one held-out set, so most prompts get the same verdict
from both models and only the discordant ones carry information: `gained` (wrong before, right
after) and `lost` (right before, wrong after). Under "no change" each discordant prompt is a fair
coin, so the two-sided p-value is a binomial tail over `gained + lost` draws. Treating the two
accuracies as independent samples instead (a two-proportion test) ignores the pairing and asks for a
change about twice as large before calling it real at these sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def mcnemar_p(gained: int, lost: int) -> float:
    """Two-sided exact p-value of `gained` against `lost` discordant pairs under no change."""
    n = gained + lost
    if n == 0:
        return 1.0
    k = min(gained, lost)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_change(before: Sequence[bool], after: Sequence[bool]) -> dict:
    """The change in accuracy from `before` to `after` (one verdict per prompt, the same prompts in
    the same order): {"n", "before", "after", "change", "gained", "lost", "se", "p"}. `se` is the
    standard error of the paired difference (in accuracy units), `p` McNemar's exact p-value."""
    if len(before) != len(after):
        raise ValueError(f"paired verdicts need the same prompts: {len(before)} before, {len(after)} after")
    n = len(before)
    gained = sum(1 for b, a in zip(before, after) if a and not b)
    lost = sum(1 for b, a in zip(before, after) if b and not a)
    if n == 0:
        return {"n": 0, "before": 0.0, "after": 0.0, "change": 0.0, "gained": 0, "lost": 0, "se": 0.0, "p": 1.0}
    change = (gained - lost) / n
    # the variance of the mean of d_i in {-1, 0, 1}: (E[d^2] - E[d]^2) / n
    se = math.sqrt(max((gained + lost) / n - change**2, 0.0) / n)
    return {"n": n, "before": sum(map(bool, before)) / n, "after": sum(map(bool, after)) / n, "change": change,
            "gained": gained, "lost": lost, "se": se, "p": mcnemar_p(gained, lost)}


def paired_by_task(tasks: Sequence[str], before: Sequence[bool], after: Sequence[bool]) -> dict[str, dict]:
    """`paired_change` for each task's prompts and for all of them ("all")."""
    out: dict[str, dict] = {}
    for task in dict.fromkeys(tasks):
        idx = [i for i, t in enumerate(tasks) if t == task]
        out[task] = paired_change([before[i] for i in idx], [after[i] for i in idx])
    out["all"] = paired_change(before, after)
    return out


def describe(change: dict) -> str:
    """'+4.5 points (SE 1.6, p = 0.008; 14 gained, 5 lost of 200)'."""
    return (f"{100 * change['change']:+.1f} points (SE {100 * change['se']:.1f}, p = {change['p']:.3g}; "
            f"{change['gained']} gained, {change['lost']} lost of {change['n']})")
