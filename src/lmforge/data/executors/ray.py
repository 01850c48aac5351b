"""The Ray executor: the pipeline's tasks as Ray remote functions.

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

`pip install 'lmforge[ray]'`. Uses the Ray runtime already initialised by the caller, else
`ray.init()`, which joins the cluster named by RAY_ADDRESS or starts a local one. Every phase, the
MinHash bucket and cluster phases included, runs as Ray tasks; they exchange data through the run
folder, which must be on storage all nodes share (a network file system), exactly as datatrove's Ray
executor expects.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.data.stage import Phase, Stage, run_task


@dataclass
class RayExecutor:
    cpus_per_task: float = 1.0

    def run_phase(self, stage: Stage, phase: Phase) -> list[dict]:
        from lmforge.ray_init import init_ray

        ray = init_ray("the Ray executor needs ray: pip install 'lmforge[ray]'")
        remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=0)(run_task)
        stage_ref = ray.put(stage)
        return ray.get([remote.remote(stage_ref, phase.name, r) for r in range(phase.n_tasks)])
