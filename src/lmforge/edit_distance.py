"""Edit distance between two sequences (strings, or lists of words): what NeedleBench's score
(lmforge.eval.metrics.needle_score) and RL's partial credit (lmforge.align.tasks.similarity) are
made of. A part of its own, so that both can use it without one importing the other."""

from __future__ import annotations

from collections.abc import Sequence


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance: insertions, deletions and substitutions of one element each (a character of a
    string, a word of a list)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
