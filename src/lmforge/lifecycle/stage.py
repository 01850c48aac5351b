"""Run-stage bookkeeping for `lmforge run`: skip what is done, redo what changed, resume what was cut.

A run stage is one step of `lmforge run` (RUN_STAGES; not a data-pipeline stage nor a training
stage). Each stage of a run owns one folder, and a `_stage.json` in it records the stage's key, a hash of
everything its outputs depend on: the stage's own settings, the keys of the stages it reads (so an
edit upstream invalidates everything downstream, as in a build system), and lmforge's version. The
record is written when the stage starts ("running") and again when it ends ("done", with the
seconds and a summary for the report). On the next run:

    done, same key       skipped; its summary is read back from the record
    running, same key    run again in the same folder: a crash or kill resumes (the trainer from
                         its last checkpoint, the data pipeline from its task markers)
    another key          the folder is emptied and the stage runs from scratch
    --from STAGE         that stage and every later one run from scratch

Records are written atomically (temp file + rename), so a kill never leaves a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.atomic import write_json

RECORD = "_stage.json"
RUN_STAGES = ("crawl", "data", "tokenizer", "shards", "pretrain", "eval", "sample", "sft", "rm", "polar", "rl", "mimg",
              "vl_pretrain", "vl_sft", "vl_mpo", "report")


class RunStageInterrupted(RuntimeError):
    """A run stage stopped early on SIGTERM after writing a checkpoint; the same command resumes it."""


def run_stage_key(name: str, config, upstream: list[str]) -> str:
    """The hash of a stage's settings (any JSON-able value), its upstream keys and lmforge's version."""
    from lmforge import __version__

    blob = json.dumps({"stage": name, "config": config, "upstream": upstream, "lmforge": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_files_key(paths: list[str]) -> list:
    """What a stage's key holds of the user's input files (size and modification time), so a file
    changed under the same name redoes the stage."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([p, st.st_size, st.st_mtime_ns])
    return out


@dataclass
class RunStageOutcome:
    name: str
    folder: Path
    key: str
    status: str  # "ran", "resumed" or "skipped"
    seconds: float
    summary: dict = field(default_factory=dict)


class RunStages:
    """Runs the stages of one run in order under its folder; `force_from` names the first stage to redo."""

    def __init__(self, run_dir: Path, order: list[str], force_from: str | None = None, log=print):
        if force_from is not None and force_from not in order:
            raise ValueError(f"--from {force_from!r}: not a stage of this run; choose one of {', '.join(order)}")
        self.run_dir, self.order, self.log = run_dir, order, log
        self.forced = set(order[order.index(force_from):]) if force_from else set()
        self.outcomes: dict[str, RunStageOutcome] = {}

    def key(self, name: str) -> str:
        return self.outcomes[name].key

    def run(self, name: str, config, upstream: list[str], fn: Callable[[Path], dict]) -> RunStageOutcome:
        """Run `fn(folder) -> summary` unless the stage is done with the same key."""
        folder = self.run_dir / name
        key = run_stage_key(name, config, [self.key(u) for u in upstream])
        record_path = folder / RECORD
        record = json.loads(record_path.read_text()) if record_path.is_file() else None
        if record and record.get("key") == key and record.get("status") == "done" and name not in self.forced:
            self.log(f"[dim]stage {name}: done before with the same inputs, skipped[/dim]")
            outcome = RunStageOutcome(name, folder, key, "skipped", record["seconds"], record["summary"])
            self.outcomes[name] = outcome
            return outcome
        resumed = bool(record) and record.get("key") == key and name not in self.forced
        if folder.exists() and not resumed:
            shutil.rmtree(folder)  # other settings or --from: start clean
        folder.mkdir(parents=True, exist_ok=True)
        write_json(record_path, {"stage": name, "key": key, "status": "running", "config": config})
        self.log(f"[bold]stage {name}[/bold]" + (" (resuming)" if resumed else ""))
        start = time.perf_counter()
        summary = fn(folder)
        seconds = time.perf_counter() - start  # of this run only: a resumed stage counts from its restart
        write_json(record_path, {"stage": name, "key": key, "status": "done", "config": config,
                                 "seconds": seconds, "summary": summary})
        outcome = RunStageOutcome(name, folder, key, "resumed" if resumed else "ran", seconds, summary)
        self.outcomes[name] = outcome
        return outcome
