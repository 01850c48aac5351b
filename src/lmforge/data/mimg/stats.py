"""Counts per MIMG stage: how many items went in, how many came out, and why each other one was skipped.

Paper: LongMIT / MIMG, arXiv 2409.01893 (the paper's point is the share of usable samples, so every
drop has a reason); docs/papers.md §8.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class StageCount:
    items_in: int = 0
    items_out: int = 0
    skipped: Counter = field(default_factory=Counter)


@dataclass
class Stats:
    stages: dict[str, StageCount] = field(default_factory=dict)

    def stage(self, name: str) -> StageCount:
        return self.stages.setdefault(name, StageCount())

    def record(self, name: str, items_in: int, items_out: int, skipped: Counter | None = None) -> None:
        s = self.stage(name)
        s.items_in += items_in
        s.items_out += items_out
        s.skipped.update(skipped or {})

    def to_json(self) -> dict:
        return {name: {"in": s.items_in, "out": s.items_out, "skipped": dict(s.skipped)}
                for name, s in self.stages.items()}

    def table(self) -> str:
        """One line per stage: in, out, and the skip reasons with their counts."""
        width = max((len(n) for n in self.stages), default=5)
        lines = [f"{'stage':<{width}}  {'in':>7}  {'out':>7}  skipped"]
        for name, s in self.stages.items():
            reasons = ", ".join(f"{r} {n}" for r, n in s.skipped.most_common()) or "-"
            lines.append(f"{name:<{width}}  {s.items_in:>7}  {s.items_out:>7}  {reasons}")
        return "\n".join(lines)
