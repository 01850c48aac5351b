"""The results cache: an interrupted evaluation resumes and recomputes only what is missing."""

import hashlib
import json

import pytest

from lmforge.eval.harness import evaluate_task
from lmforge.eval.tasks import get_task


class HashLM:
    """Deterministic log-likelihoods from a hash of the request; can be told to die mid-run."""

    name, max_length = "hash", None

    def __init__(self, fingerprint="h" * 64, die_after=None):
        self.fingerprint, self.die_after, self.seen = fingerprint, die_after, 0

    def loglikelihood(self, requests, progress=None):
        if self.die_after is not None and self.seen >= self.die_after:
            raise KeyboardInterrupt
        self.seen += len(requests)
        return [(-int(hashlib.sha256(repr(r).encode()).hexdigest()[:6], 16) / 1e6, False) for r in requests]


def test_interrupted_run_resumes(tmp_path):
    task = get_task("arc_easy")
    full, full_records = evaluate_task(HashLM(), task, limit=10)
    with pytest.raises(KeyboardInterrupt):
        evaluate_task(HashLM(die_after=1), task, limit=10, cache_dir=tmp_path, chunk_size=4)
    resumed_lm = HashLM()
    summary, records = evaluate_task(resumed_lm, task, limit=10, cache_dir=tmp_path, chunk_size=4)
    assert summary["cached"] == 4  # the first chunk survived the interruption
    assert resumed_lm.seen == sum(len(ex.choices) for ex in task.examples(10)[4:])
    assert records == full_records and summary["metrics"] == full["metrics"]
    again = HashLM()
    summary, _ = evaluate_task(again, task, limit=10, cache_dir=tmp_path)
    assert again.seen == 0 and summary["cached"] == 10


def test_cut_line_is_skipped_and_rescored(tmp_path):
    task = get_task("arc_easy")
    evaluate_task(HashLM(), task, limit=3, cache_dir=tmp_path)
    [path] = list(tmp_path.rglob("arc_easy.jsonl"))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # a write cut short by a kill
    lm = HashLM()
    with pytest.warns(UserWarning, match=r"arc_easy.jsonl:3: unreadable cache line"):
        summary, _ = evaluate_task(lm, task, limit=3, cache_dir=tmp_path)
    assert summary["cached"] == 2 and lm.seen == len(task.examples(3)[2].choices)
    for line in path.read_text().splitlines()[-1:]:
        json.loads(line)  # the rescored item starts on a fresh line


def test_cache_is_keyed_by_model_and_prompt(tmp_path):
    task = get_task("arc_easy")
    evaluate_task(HashLM(), task, limit=3, cache_dir=tmp_path)
    other_model = HashLM(fingerprint="g" * 64)
    evaluate_task(other_model, task, limit=3, cache_dir=tmp_path)
    assert other_model.seen > 0
    task.num_fewshot = 1  # a different prompt: every item is scored again
    changed = HashLM()
    summary, _ = evaluate_task(changed, task, limit=3, cache_dir=tmp_path)
    assert summary["cached"] == 0 and changed.seen > 0
