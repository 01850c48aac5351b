"""The local executor: tasks in this process (workers = 1) or a pool of processes.

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

Processes are forked, so a stage (its steps, their parameters) reaches the workers without
pickling the models the steps load in `setup()`; each worker loads them once per task.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass

from lmforge.data.stage import Phase, Stage, run_task


@dataclass
class LocalExecutor:
    workers: int = 1

    def run_phase(self, stage: Stage, phase: Phase) -> list[dict]:
        ranks = list(range(phase.n_tasks))
        if self.workers <= 1 or len(ranks) <= 1:
            return [run_task(stage, phase.name, r) for r in ranks]
        with mp.get_context("fork").Pool(min(self.workers, len(ranks)), maxtasksperchild=1) as pool:
            return pool.starmap(run_task, [(stage, phase.name, r) for r in ranks], chunksize=1)
