"""Executors: run a pipeline's stages, phase by phase, task by task (as in datatrove).

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

Both executors run the same `Stage` objects through the same `stage.run_task`; they only differ in
where a task runs (this machine's processes, or a Ray cluster). Tasks already marked done are
skipped, which is how a killed run resumes.
"""

from __future__ import annotations

import json
import time

from lmforge.atomic import write_atomic
from lmforge.data.pipeline import Pipeline
from lmforge.data.readers import require_inputs
from lmforge.data.stage import clean_temporaries


def run_pipeline(pipeline: Pipeline, executor: str | None = None, workers: int | None = None,
                 log=print) -> dict:
    """Run every stage; returns {"stages": {stage: {"ran": n, "skipped": n, "seconds": s}}}. An input
    that matches no file is refused before anything is written."""
    section = pipeline.section
    require_inputs(section.input, section.input_format, section.input_pattern, f"{pipeline.source}: pipeline.input")
    name = executor or pipeline.section.executor
    workers = workers or pipeline.section.workers
    if name == "ray":
        from lmforge.data.executors.ray import RayExecutor

        runner = RayExecutor()
    else:
        from lmforge.data.executors.local import LocalExecutor

        runner = LocalExecutor(workers)
    out = pipeline.output
    out.mkdir(parents=True, exist_ok=True)
    clean_temporaries(out)
    write_atomic(out / "_pipeline.json", json.dumps({"source": pipeline.source, **vars(pipeline.section),
                                                    "stages": [s.name for s in pipeline.stages],
                                                    "branches": pipeline.branches}, indent=1) + "\n")
    summary: dict = {"executor": name, "stages": {}}
    for stage in pipeline.stages:
        start = time.perf_counter()
        ran = skipped = 0
        stage.prepare()
        for phase in stage.phases():
            results = runner.run_phase(stage, phase)
            ran += sum(not r["skipped"] for r in results)
            skipped += sum(r["skipped"] for r in results)
        seconds = time.perf_counter() - start
        summary["stages"][stage.name] = {"ran": ran, "skipped": skipped, "seconds": round(seconds, 3)}
        log(f"stage {stage.name}: {ran} tasks run, {skipped} already done, {seconds:.1f}s -> {stage.output_dir}")
    write_atomic(out / "_run.json", json.dumps(summary, indent=1) + "\n")
    return summary
