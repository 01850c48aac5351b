"""`lmforge run`: the micro recipe end to end, stage skipping, --from, seeds, and resume after a kill.

The micro recipe runs every stage of the demo (crawl -> data -> tokenizer -> shards -> pre-training
with a short and a long stage -> eval -> samples -> report) in about 15 seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge.config import load_recipe
from lmforge.recipe import Recipe
from lmforge.run import run

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "recipes" / "micro.toml"
LONG_TASKS = ROOT / "tests" / "eval" / "fixtures" / "long_qa_example.jsonl"  # a LongBench-style file
SECTIONS = ["Stages: timings and MFU", "Data: the curation funnel", "Tokenizer", "Pre-training", "Evaluation",
            "Samples", "Alignment", "Online RL", "Long-context instructions (MIMG)", "Config and versions"]


def micro(out_dir: Path, *overrides: str) -> Recipe:
    return load_recipe(MICRO, Recipe, [f'run.out_dir="{out_dir}"', f'eval.long_tasks=["{LONG_TASKS}"]', *overrides])


def statuses(report: dict) -> dict[str, str]:
    return {name: t["status"] for name, t in report["timings"].items()}


def numbers(report: dict) -> dict:
    """What a run measured, without timings: the part that must not depend on interruptions."""
    pre = {name: {k: s[k] for k in ("steps", "tokens", "loss", "val_loss", "skipped")}
           for name, s in report["pretrain"]["stages"].items()}
    ev = report["eval"]
    return {"pretrain": pre, "perplexity": ev["perplexity"], "benchmarks": {k: b["metrics"] for k, b in
                                                                           ev["benchmarks"].items()},
            "niah": {k: n["scores"] for k, n in ev["niah"].items()},
            "tokenizer": report["tokenizer"]["bytes_per_token"], "funnel": [r["docs_out"] for r in
                                                                            report["data"]["funnel"]],
            "samples": report["sample"]["samples"][0]["completion"],
            "sft": report["sft"]["accuracy_after"], "rm": report["rm"]["accuracy"], "polar": report["polar"]["accuracy"],
            "rl": report["rl"]["accuracy_after"]}


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("micro")
    report = run(micro(out), MICRO.parent)
    return out, report


def assert_numbers_are_the_stage_files(out: Path, report: dict) -> None:
    """The report's numbers are read back from the files each stage wrote, not from the report."""
    metrics = [json.loads(line) for line in (out / "pretrain/train/long/metrics.jsonl").read_text().splitlines()]
    assert report["pretrain"]["stages"]["long"]["val_loss"] == [m for m in metrics if "val_loss" in m][-1]["val_loss"]
    bench = json.loads((out / "eval/benchmarks/results.json").read_text())
    assert report["eval"]["benchmarks"]["arc_easy"]["metrics"] == bench["tasks"]["arc_easy"]["metrics"]
    samples = json.loads((out / "sample/samples.json").read_text())
    assert report["sample"]["samples"][0]["completion"] == samples[0]["completion"]


def stage_files(out: Path) -> dict[str, int]:
    """Every file the stages wrote (not the report, which is redrawn each run, nor the stage records),
    with its mtime."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and p.parent != out and p.name != "_stage.json" and "report" not in p.relative_to(out).parts}


def test_micro_recipe_runs_every_stage(first):
    out, report = first
    assert set(statuses(report).values()) == {"ran"}
    for name in ("crawl", "data", "tokenizer", "shards", "pretrain", "eval", "sample", "sft", "rm", "polar", "rl"):
        assert json.loads((out / name / "_stage.json").read_text())["status"] == "done"
    # the alignment stages: a chat model, task accuracy before / after, two reward models and a soup
    assert (out / "sft/model/config.json").is_file() and set(report["sft"]["accuracy_after"]) >= {"add", "all"}
    assert report["sft"]["accuracy_after"] == json.loads((out / "sft/sft.json").read_text())["accuracy_after"]
    assert set(report["rm"]["accuracy"]) == {"held_out", "exploit"} and (out / "rm/soup/config.json").is_file()
    assert len(report["polar"]["policies"]) == 2 * 3  # pretrain model, an SFT checkpoint, the SFT model; 2 temperatures
    assert (out / "polar/finetune/model/config.json").is_file()
    assert report["rl"]["steps"] == 2 and (out / "rl/model/config.json").is_file() and (out / "rl/curves.png").is_file()
    assert_numbers_are_the_stage_files(out, report)
    funnel = report["data"]["funnel"]
    lost = sum('"corrupt_member"' in line for line in (out / "crawl" / "truth.jsonl").read_text().splitlines())
    assert funnel[0]["docs_in"] == 150 - lost and 0 < funnel[-1]["docs_out"] < funnel[0]["docs_in"]
    assert report["shards"]["tokens"]["long"]["passkey"] > 0  # pass-key documents reached the long stage
    assert set(report["tokenizer"]["bytes_per_token"]) == {"en", "zh"}
    assert (out / "pretrain/model-llama/config.json").is_file()
    # Both renderings carry every section; the HTML embeds its images.
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for title in SECTIONS:
        assert f"## {title}" in md and f">{title}</h2>" in html
    # SFT's and RL's task tables show each task's floor; RL's change is tested prompt by prompt
    assert md.count("| one answer |") == 2 and "prompt by prompt on the same held-out prompts" in md
    assert "| pass@8 (T 1.0) |" in md  # SFT's table: the ceiling RL can lift each task towards
    # funnel, loss curves, NIAH heatmap, multi-needle and multi-hop heatmaps, RL curves
    assert html.count("data:image/png;base64,") == 6
    variants = report["eval"]["niah_variants"]
    assert set(variants) == {"passkey_multi_needle", "passkey_multi_hop"}
    assert "NeedleBench multi-needle (passkey" in md and "NeedleBench multi-hop (passkey" in md
    long = report["eval"]["long_tasks"]["long_qa_example"]
    assert (long["n"], long["skipped"]) == (4, 0) and 0 <= long["score"] <= 100
    assert json.loads((out / "eval/long_long_qa_example.json").read_text())["score"] == long["score"]
    assert "http://" not in html and "https://" not in html  # static: nothing fetched


def test_rerun_skips_done_stages_and_edits_redo_downstream(first, tmp_path):
    out, report = first
    before = stage_files(out)
    again = run(micro(out), MICRO.parent)
    assert {k: v for k, v in statuses(again).items() if k != "report"} == {
        k: "skipped" for k in statuses(report) if k != "report"}
    # Skipped means nothing was redone: no stage wrote a file, and the numbers are still the files'.
    assert stage_files(out) == before
    assert_numbers_are_the_stage_files(out, again)
    # An eval setting changes only the eval stage (and the report).
    edited = run(micro(out, "eval.limit=2"), MICRO.parent)
    assert [k for k, v in statuses(edited).items() if v != "skipped"] == ["eval"]
    assert edited["eval"]["benchmarks"]["arc_easy"]["n"] == 2
    # --from redoes that stage and everything after it.
    forced = run(micro(out, "eval.limit=2"), MICRO.parent, from_stage="pretrain")
    assert [k for k, v in statuses(forced).items() if v != "skipped"] == ["pretrain", "eval", "sample", "sft", "rm",
                                                                                "polar", "rl", "mimg"]
    assert numbers(forced)["pretrain"] == numbers(report)["pretrain"]  # the same inputs train the same model
    # A setting upstream redoes its stage and every stage that reads what it wrote.
    upstream = run(micro(out, "eval.limit=2", "data.passkey_docs=9", "data.short_passkey_docs=5"), MICRO.parent)
    assert [k for k, v in statuses(upstream).items() if v != "skipped"] == ["shards", "pretrain", "eval", "sample",
                                                                             "sft", "rm", "polar", "rl", "mimg"]
    shards = upstream["shards"]
    assert shards["docs"]["train"] == report["shards"]["docs"]["train"] + 5  # at the short stage's length
    assert 5 * 16 <= shards["tokens"]["train"]["passkey"] < shards["tokens"]["long"]["passkey"]


def test_seed_changes_the_numbers(first, tmp_path):
    _, report = first
    other = run(micro(tmp_path, "run.seed=1"), MICRO.parent)
    a, b = numbers(report), numbers(other)
    assert a["pretrain"]["long"]["val_loss"] != b["pretrain"]["long"]["val_loss"]
    assert a["funnel"] != b["funnel"] or a["tokenizer"] != b["tokenizer"]


def test_bad_from_stage_and_missing_pipeline_are_clear(tmp_path):
    with pytest.raises(ValueError, match="not a stage of this run"):
        run(micro(tmp_path), MICRO.parent, from_stage="pretraining")
    with pytest.raises(FileNotFoundError, match="data.pipeline"):
        run(micro(tmp_path / "b", 'data.pipeline="nope.toml"'), MICRO.parent)


def test_killed_run_resumes_and_matches(first, tmp_path):
    """SIGKILL during pre-training, then the same command: it resumes from the last checkpoint and
    the report's numbers equal the uninterrupted run's."""
    _, report = first
    cmd = [sys.executable, "-m", "lmforge.cli", "run", str(MICRO), "--set", f'run.out_dir="{tmp_path}"']
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = tmp_path / "pretrain" / "train" / "short" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (ckpts.is_dir() and any(p.name.startswith("step_") for p in ckpts.iterdir())):
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record = json.loads((tmp_path / "pretrain" / "_stage.json").read_text())
    assert record["status"] == "running"  # the kill cut pre-training short
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report2 = json.loads((tmp_path / "report.json").read_text())
    assert statuses(report2)["pretrain"] == "resumed"
    assert statuses(report2)["data"] == "skipped"
    assert numbers(report2) == numbers(report)


def test_shipped_recipes_parse():
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        if path.name != "data-demo.toml":
            load_recipe(path, Recipe)


@pytest.mark.skipif(__import__("lmforge.report.render", fromlist=["x"]).find_chromium() is None,
                    reason="no Chromium (apt-get install chromium, or set LMFORGE_CHROMIUM)")
def test_report_renders_in_headless_chromium(first, tmp_path):
    from lmforge.report.render import check, render

    out, _ = first
    result = render(out / "report.html", tmp_path / "report.png")
    assert check(result, SECTIONS) == []
    assert result["images"] == 6 and result["width"] == 1280 and result["height"] > 2000
