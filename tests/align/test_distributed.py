"""SFT and a reward model as a user runs them under torchrun: FSDP2 over 2 gloo processes gives the
losses of 1 process (the loaders split each global batch; the losses normalise by the global count)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MICRO = Path(__file__).resolve().parents[2] / "recipes" / "micro.toml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(command, tiny_dir, out, nproc, sets):
    args = ["-m", "lmforge.cli", command, str(MICRO), "--init-from", str(tiny_dir), "--out", str(out),
            "--set", "run.device='cpu'", *[a for s in sets for a in ("--set", s)]]
    cmd = [sys.executable, *args] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _losses(metrics: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r}


@pytest.mark.parametrize("command, sets, metrics", [
    ("sft", ["sft.steps=4", "sft.global_batch=4", "sft.micro_batch=2", "sft.eval_examples=8"], "metrics.jsonl"),
    ("rm", ["rm.steps=4", "rm.global_batch=4", "rm.micro_batch=2", "rm.ensemble=1", "rm.eval_examples=8"],
     "member-0/metrics.jsonl"),
])
def test_two_processes_match_one(tiny_dir, tmp_path, command, sets, metrics):
    _run(command, tiny_dir, tmp_path / "one", 1, sets)
    _run(command, tiny_dir, tmp_path / "two", 2, sets)
    a, b = _losses(tmp_path / "one" / metrics), _losses(tmp_path / "two" / metrics)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-5, (a, b)
