"""Statistics the benchmarks share: the paired ratio of interleaved timings and its confidence
interval, so that "faster" or "at parity" is a statement a run supports, not a reading of one
noisy number.

Each repeat times the two sides back to back (the order flipping every repeat), so a slow spell of
the machine hits both calls of a pair; the ratio of a pair is therefore steadier than the ratio of
the two sides' medians, and the median of those pair ratios is what the tables print.
"""

from __future__ import annotations

import math
import statistics


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval for the median of `values`: the order statistics
    (k-th smallest, k-th largest) with the largest k such that P(Binomial(n, 1/2) < k) <= (1 - level) / 2,
    the sign-test interval (Conover, Practical Nonparametric Statistics, 3.2). None when n is too
    small for that level (n < 6 at 95%). It assumes only that the repeats are independent draws."""
    n, tail = len(values), (1 - level) / 2
    k, below = 0, 0.0  # below = P(Binomial(n, 1/2) <= k) as k grows
    while k <= n:
        below += math.comb(n, k) / 2**n
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    s = sorted(values)
    return s[k - 1], s[n - k]


def paired_ratio(ours_s: list[float], theirs_s: list[float], unit: str = "") -> str:
    """lmforge / other as throughput (theirs' seconds over ours', above 1: lmforge faster), the
    median of the per-repeat ratios, with its 95% interval: e.g. "1.03 [1.01, 1.05]"."""
    pairs = [t / o for o, t in zip(ours_s, theirs_s, strict=True)]
    ci = median_ci(pairs)
    return f"{statistics.median(pairs):.2f}{unit}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def print_ratio_table(console, title: str, rows: list[tuple[str, str, str, str]], other: str = "other",
                      markdown: str | None = None, ratio_header: str = "ratio") -> None:
    """Print (measure, lmforge, other, ratio) rows as a rich table, and as a Markdown table to `markdown`."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("measure", "lmforge", other, "ratio"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if markdown:
        lines = [f"| measure | lmforge | {other} | {ratio_header} |", "|---|---:|---:|---:|"]
        lines += [f"| {m} | {o} | {t} | {r} |" for m, o, t, r in rows]
        with open(markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
