"""The evaluation loop: tasks x model -> per-item records -> metrics.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9.

`evaluate` runs tasks on any `LanguageModel` in batches, item records going to the results cache
as they finish (so a killed run resumes where it stopped); `run_eval` is the command-line
function: open a checkpoint, evaluate, write `results.json`, `results.md` and one
`samples/<task>.jsonl` of per-item records, and print the table.

Metrics are fractions in [0, 1] in the JSON (percentages in the tables):
`ppl` tasks give `acc` and `acc_norm` (and `acc_macro`, the mean over subjects, where a task has
subjects), `gen` tasks `exact_match`, `code` tasks `pass@k` for each k.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from lmforge.eval.cache import ResultsCache, item_key
from lmforge.eval.lm import LanguageModel
from lmforge.eval.metrics import choice_predictions, mean, pass_at_k
from lmforge.eval.report import markdown_table, print_results
from lmforge.eval.results import RESULTS_FORMAT, write_results
from lmforge.eval.sandbox import Limits, run_programs
from lmforge.eval.task import Example, Task
from lmforge.generate import SamplingParams


def request_key(lm: LanguageModel, task: Task, ex: Example, seed: int) -> str:
    """Everything that decides an item's record (the model's weights are the cache's folder)."""
    common = [task.name, task.mode, ex.prompt, getattr(lm, "max_length", None)]
    if task.mode == "ppl":
        return item_key(*common, ex.choices, task.target_delimiter)
    return item_key(*common, task.stop, task.max_new_tokens, task.temperature, task.samples, seed)


def _score_ppl(lm: LanguageModel, task: Task, examples: list[Example], seed: int) -> list[dict]:
    requests = [(ex.prompt, task.target_delimiter + c) for ex in examples for c in ex.choices]
    results = lm.loglikelihood(requests)
    records, at = [], 0
    for ex in examples:
        chunk = results[at:at + len(ex.choices)]
        at += len(ex.choices)
        lls = [float(ll) for ll, _ in chunk]
        pred, pred_norm = choice_predictions(lls, ex.choices)
        records.append({"id": ex.id, "group": ex.group, "gold": ex.gold, "logliks": lls,
                        "greedy": [bool(g) for _, g in chunk], "pred": pred, "pred_norm": pred_norm,
                        "acc": float(pred == ex.gold), "acc_norm": float(pred_norm == ex.gold)})
    return records


def _sampling(task: Task, seed: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=task.max_new_tokens, temperature=task.temperature,
                          stop_strings=tuple(task.stop), seed=seed)


def _score_gen(lm: LanguageModel, task: Task, examples: list[Example], seed: int) -> list[dict]:
    completions = lm.generate([ex.prompt for ex in examples], _sampling(task, seed))
    records = []
    for ex, text in zip(examples, completions):
        pred = task.extract(text)
        records.append({"id": ex.id, "group": ex.group, "gold": ex.gold, "completion": text,
                        "extracted": pred, "correct": float(bool(task.match(pred, ex.gold)))})
    return records


def _score_code(lm: LanguageModel, task: Task, examples: list[Example], seed: int) -> list[dict]:
    repeated = [ex for ex in examples for _ in range(task.samples)]  # n samples per problem
    completions = lm.generate([ex.prompt for ex in repeated], _sampling(task, seed))
    programs = [task.program(ex.doc, c) for ex, c in zip(repeated, completions)]
    outcomes = run_programs(programs, Limits(timeout=task.timeout))
    records = []
    for i, ex in enumerate(examples):
        part = slice(i * task.samples, (i + 1) * task.samples)
        results = outcomes[part]
        records.append({"id": ex.id, "group": ex.group, "completions": completions[part],
                        "status": [r.status for r in results], "passed": [r.passed for r in results],
                        "errors": [r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "" for r in results]})
    return records


SCORERS = {"ppl": _score_ppl, "gen": _score_gen, "code": _score_code}


def aggregate(task: Task, records: list[dict]) -> dict:
    """Task metrics from per-item records, overall and per group (subject)."""
    def metrics_of(rows: list[dict]) -> dict:
        if task.mode == "ppl":
            return {"acc": mean([r["acc"] for r in rows]), "acc_norm": mean([r["acc_norm"] for r in rows])}
        if task.mode == "gen":
            return {"exact_match": mean([r["correct"] for r in rows])}
        out = {}
        for k in task.ks:
            out[f"pass@{k}"] = mean([pass_at_k(len(r["passed"]), sum(r["passed"]), k) for r in rows])
        return out

    result = {"mode": task.mode, "n": len(records), "metrics": metrics_of(records) if records else {}}
    groups = defaultdict(list)
    for r in records:
        if r.get("group") is not None:
            groups[r["group"]].append(r)
    if groups:
        result["groups"] = {g: {**metrics_of(rows), "n": len(rows)} for g, rows in sorted(groups.items())}
        if task.mode == "ppl":
            result["metrics"]["acc_macro"] = mean([m["acc"] for m in result["groups"].values()])
    return result


# Items scored between two cache writes: large for log-likelihoods (more sharing per pass), small
# for generation and code, whose items are slow (a finer progress bar, less lost on a kill).
CHUNK_SIZE = {"ppl": 256, "gen": 16, "code": 8}


def evaluate_task(lm: LanguageModel, task: Task, *, limit: int | None = None, cache_dir: str | Path | None = None,
                  seed: int = 1234, chunk_size: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> tuple[dict, list[dict]]:
    """(summary, per-item records) of one task; `progress(done, total)` is called as items finish."""
    chunk_size = chunk_size or CHUNK_SIZE[task.mode]
    start = time.perf_counter()
    examples = task.examples(limit)
    cache = ResultsCache(cache_dir, lm.fingerprint, task.name)
    keys = [request_key(lm, task, ex, seed) for ex in examples]
    todo = [(k, ex) for k, ex in zip(keys, examples) if cache.get(k) is None]
    done = len(examples) - len(todo)
    if progress:
        progress(done, len(examples))
    for at in range(0, len(todo), chunk_size):
        part = todo[at:at + chunk_size]
        records = SCORERS[task.mode](lm, task, [ex for _, ex in part], seed)
        cache.put_many([(k, rec) for (k, _), rec in zip(part, records)])
        done += len(part)
        if progress:
            progress(done, len(examples))
    records = [cache.get(k) for k in keys]
    summary = aggregate(task, records)
    summary.update(seconds=round(time.perf_counter() - start, 3), cached=len(examples) - len(todo),
                   paper=task.paper)
    return summary, records


def evaluate(lm: LanguageModel, tasks: Sequence[Task], *, limit: int | None = None,
             cache_dir: str | Path | None = None, seed: int = 1234, show_progress: bool = True,
             samples_dir: str | Path | None = None) -> dict:
    """Evaluate every task; returns the results document (`lmforge.eval.results` describes it)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TextColumn

    results = {"format": RESULTS_FORMAT, "model": {"name": lm.name, "fingerprint": lm.fingerprint},
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "settings": {"limit": limit, "seed": seed, "max_length": getattr(lm, "max_length", None)},
               "tasks": {}}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not show_progress, transient=False) as bar:
        for task in tasks:
            handle = bar.add_task(task.name, total=None)

            def update(done: int, total: int, handle=handle) -> None:
                bar.update(handle, completed=done, total=total)

            summary, records = evaluate_task(lm, task, limit=limit, cache_dir=cache_dir, seed=seed, progress=update)
            results["tasks"][task.name] = summary
            if samples_dir is not None:
                path = Path(samples_dir) / f"{task.name}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return results


def run_eval(checkpoint: str | Path, tasks: Sequence[str], *, limit: int | None = None, out: str | Path | None = None,
             cache_dir: str | Path | None = None, tokenizer: str | Path | None = None, device: str = "auto",
             max_length: int | None = None, batch_size: int = 16, seed: int = 1234, show_progress: bool = True,
             print_table: bool = True, samples: int | None = None, temperature: float | None = None,
             pass_k: Sequence[int] | None = None, max_new_tokens: int | None = None) -> dict:
    """`lmforge eval run`: evaluate a checkpoint directory on named tasks and write the reports.

    out: folder for results.json, results.md and samples/ (default: <checkpoint>/../eval/<name>);
    cache_dir: the results cache (default: <out>/cache; resume by running the same command again);
    samples, temperature, pass_k: for the code tasks, n completions per problem sampled at this
    temperature and the k of pass@k (default: one greedy completion, pass@1);
    max_new_tokens: a cap on generated tokens for the generation and code tasks (quick runs).
    """
    from lmforge.eval.lm import load_lm
    from lmforge.eval.tasks import get_task

    task_objs = [get_task(t) for t in tasks]  # fail on a bad task name before loading the model
    overrides = {k: v for k, v in (("samples", samples), ("temperature", temperature),
                                   ("ks", tuple(pass_k) if pass_k else None)) if v is not None}
    if overrides:
        # dataclasses.replace re-runs the checks (pass@k needs samples >= k).
        task_objs = [dataclasses.replace(t, **overrides) if t.mode == "code" else t for t in task_objs]
    if max_new_tokens is not None:
        task_objs = [dataclasses.replace(t, max_new_tokens=max_new_tokens) if t.mode != "ppl" else t
                     for t in task_objs]
    checkpoint = Path(checkpoint)
    lm = load_lm(checkpoint, tokenizer=tokenizer, device=device, max_length=max_length, batch_size=batch_size)
    out = Path(out) if out is not None else checkpoint.resolve().parent / "eval" / checkpoint.name
    out.mkdir(parents=True, exist_ok=True)
    results = evaluate(lm, task_objs, limit=limit, cache_dir=cache_dir or out / "cache", seed=seed,
                       show_progress=show_progress, samples_dir=out / "samples")
    results["model"]["path"] = str(checkpoint.resolve())
    results_path = write_results(results, out)
    (out / "results.md").write_text(markdown_table([results]) + "\n", encoding="utf-8")
    if print_table:
        print_results([results])
        print(f"wrote {results_path}")
    return results
