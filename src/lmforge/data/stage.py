"""Stages and phases: how a pipeline is cut into tasks that executors run.

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

Every stage of WanJuan-CC is a separate output whose retention is reported, so a stage reads
files (the raw crawl, or an earlier stage's folder), runs its steps and writes its own folder.
A stage is made of phases, each a number of independent tasks `run_task(phase, rank)`; a map stage
has one phase with a task per input slice, the dedup stage four (signatures, buckets, clusters,
filter). A task writes its outputs atomically, then its stats, then its completion marker, so
any executor can run tasks in any order and skip the finished ones on a rerun.

Run folder layout:

    <out>/<stage>/                 the stage's documents (<rank>.<part>.jsonl.gz) or token shards
    <out>/_stats/<stage>/          one JSON per task: counts, drops with reasons, errors
    <out>/_drops/<stage>/          (id, url, step, reason) of every dropped document
    <out>/_done/<stage>/           completion markers
    <out>/_work/<stage>/           intermediate files (MinHash signatures, LSH edges, clusters)
    <out>/_errors/<stage>/         the traceback of a task that failed
"""

from __future__ import annotations

import contextlib
import gzip
import json
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.data.document import Document
from lmforge.data.readers import READERS, list_inputs
from lmforge.data.step import Step, TaskStats, Timer
from lmforge.data.writers import ShardedWriter, write_file


@dataclass
class Phase:
    name: str
    n_tasks: int


@dataclass
class Stage:
    """A named stage: reads `input_dir` (format `input_format`), writes `<out>/<name>/`."""

    name: str
    out: Path
    input_dir: str
    input_format: str = "jsonl"
    tasks: int = 1
    output_format: str = "jsonl.gz"
    max_doc_bytes: int = 10_000_000
    input_pattern: str = ""

    @property
    def output_dir(self) -> Path:
        return self.out / self.name

    def meta(self, kind: str) -> Path:
        return self.out / f"_{kind}" / self.name

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Run once by the executor before any task (e.g. train a tokenizer both tasks share)."""

    def run_task(self, phase: str, rank: int) -> TaskStats:
        raise NotImplementedError

    # ---- shared helpers ----

    def input_files(self) -> list[str]:
        return list_inputs(self.input_dir, self.input_format, self.input_pattern)

    def my_files(self, rank: int) -> list[str]:
        return self.input_files()[rank::self.tasks]

    def read(self, files: list[str], stats: TaskStats) -> Iterator[Document]:
        reader = READERS[self.input_format](max_doc_bytes=self.max_doc_bytes)
        for path in files:
            yield from reader.read(path, stats)

    def done_marker(self, phase: str, rank: int) -> Path:
        return self.meta("done") / f"{phase}-{rank:05d}"

    def is_done(self, phase: str, rank: int) -> bool:
        return self.done_marker(phase, rank).exists()

    def finish(self, phase: str, rank: int, stats: TaskStats) -> None:
        """Stats, dropped ids, then the completion marker: each written whole, by rename."""
        write_file(self.meta("stats") / f"{phase}-{rank:05d}.json",
                   (json.dumps(stats.to_dict(), indent=1, ensure_ascii=False) + "\n").encode())
        drops = "".join(json.dumps(dict(zip(("id", "url", "step", "reason"), d)), ensure_ascii=False) + "\n"
                        for d in stats.dropped)
        write_file(self.meta("drops") / f"{phase}-{rank:05d}.jsonl.gz", gzip.compress(drops.encode(), 3))
        write_file(self.done_marker(phase, rank), b"")


def clean_temporaries(directory: Path) -> None:
    """Remove the hidden temporaries a killed task left behind."""
    if directory.exists():
        for p in directory.rglob(".*.tmp*"):
            p.unlink(missing_ok=True)


@dataclass
class MapStage(Stage):
    """Read, run the steps document by document, write: one task per slice of the input files."""

    steps: list[Step] = field(default_factory=list)

    def phases(self) -> list[Phase]:
        return [Phase("map", self.tasks)]

    def prepare(self) -> None:
        for step in self.steps:
            step.prepare(self)

    def run_task(self, phase: str, rank: int) -> TaskStats:
        stats = TaskStats(stage=self.name, rank=rank)
        timer = Timer()
        sink = bool(self.steps) and self.steps[-1].sink  # the last step writes the output itself
        with contextlib.nullcontext() if sink else ShardedWriter(self.output_dir, rank, self.output_format) as writer:
            for step in self.steps:
                step.bind(stats)
                step.setup()
            docs: Iterator[Document] = _counted_in(self.read(self.my_files(rank), stats), stats)
            for step in self.steps:
                docs = step.run(docs, rank, self.tasks)
            for doc in docs:
                stats.count_out(doc)
                writer.write(doc)
        stats.seconds = timer.seconds()
        return stats


def _counted_in(docs: Iterator[Document], stats: TaskStats) -> Iterator[Document]:
    for doc in docs:
        stats.count_in(doc)
        yield doc


def run_task(stage: Stage, phase: str, rank: int) -> dict:
    """Run one task unless already done; returns its stats (a skipped task returns {"skipped": True})."""
    if stage.is_done(phase, rank):
        return {"stage": stage.name, "phase": phase, "rank": rank, "skipped": True}
    try:
        stats = stage.run_task(phase, rank)
    except Exception as e:
        # One line for the user; the traceback kept in the run folder for whoever debugs the step.
        log = stage.meta("errors") / f"{phase}-{rank:05d}.txt"
        write_file(log, traceback.format_exc().encode())
        first = (str(e).strip().splitlines() or [""])[0]
        raise TaskError(f"stage {stage.name!r}, phase {phase!r}, task {rank}: {type(e).__name__}: {first} "
                        f"(traceback in {log})") from None
    stage.finish(phase, rank, stats)
    return {"stage": stage.name, "phase": phase, "rank": rank, "skipped": False}


class TaskError(RuntimeError):
    """A task that failed: one line naming the stage, phase, task and the error, and the file
    under `<out>/_errors/` that holds its traceback."""
