"""A killed run resumes: finished tasks are skipped and the final output is identical (issue #3)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.data.conftest import demo_recipe


def write_recipe(path: Path, data: dict) -> None:
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)
    lines = ["[pipeline]"] + [f"{k} = {value(v)}" for k, v in data["pipeline"].items()]
    for stage in data["stage"]:
        lines += ["", "[[stage]]", f"name = {json.dumps(stage['name'])}"]
        if "input" in stage:
            lines.append(f"input = {json.dumps(stage['input'])}")
        lines.append("steps = [" + ", ".join(value(s) for s in stage["steps"]) + "]")
    path.write_text("\n".join(lines) + "\n")


def outputs(out: Path) -> dict[str, str]:
    """Digest of every data file (documents, shards), decompressed so gzip headers do not matter."""
    import gzip

    digests = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and not p.name.startswith(".") and "_stats" not in p.parts and p.name not in ("_run.json", "_pipeline.json"):
            data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            digests[str(p.relative_to(out))] = hashlib.sha1(data).hexdigest()
    return digests


def test_killed_run_resumes_with_identical_output(demo_crawl, small_tokenizer, tmp_path):
    stages = ["format", "clean", "dedup", "safe", "tokens"]
    reference = tmp_path / "reference"
    write_recipe(tmp_path / "ref.toml", demo_recipe(demo_crawl, reference, small_tokenizer, stages, workers=1, tasks=6))
    cmd = [sys.executable, "-m", "lmforge.data.cli", "run"]
    subprocess.run(cmd + [str(tmp_path / "ref.toml")], check=True, capture_output=True)

    out = tmp_path / "killed"
    write_recipe(tmp_path / "run.toml", demo_recipe(demo_crawl, out, small_tokenizer, stages, workers=1, tasks=6))
    proc = subprocess.Popen(cmd + [str(tmp_path / "run.toml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = out / "_done" / "clean"
    deadline = time.time() + 120
    while time.time() < deadline and not (done.is_dir() and len(list(done.iterdir())) >= 2):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)   # mid-stage: some clean tasks finished, others not
    proc.wait()
    finished = len(list(done.iterdir()))
    assert 2 <= finished < 6, "the run was not killed in the middle of the clean stage"
    assert not (out / "tokens").exists()

    result = subprocess.run(cmd + [str(tmp_path / "run.toml")], check=True, capture_output=True, text=True)
    summary = json.loads((out / "_run.json").read_text())["stages"]
    assert summary["format"]["ran"] == 0 and summary["format"]["skipped"] == 6
    assert summary["clean"]["skipped"] >= finished and summary["clean"]["ran"] == 6 - summary["clean"]["skipped"]
    assert "already done" in result.stdout
    assert outputs(out) == outputs(reference)
