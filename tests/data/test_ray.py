"""The Ray executor runs the same pipeline and produces the same outputs as the local executor."""

from __future__ import annotations

import signal

import pytest

from lmforge.data.democrawl import write_demo_crawl
from lmforge.data.executors import run_pipeline
from lmforge.data.pipeline import build_pipeline
from tests.data.conftest import DEMO_RECIPE, demo_recipe
from tests.data.test_resume import outputs

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    previous = signal.getsignal(signal.SIGTERM)  # ray.init installs its own and leaves it after shutdown
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
    signal.signal(signal.SIGTERM, previous)  # later tests fork: a child must not run Ray's exit path


def test_ray_and_local_outputs_are_identical(ray_cluster, small_tokenizer, tmp_path):
    crawl = tmp_path / "crawl"
    write_demo_crawl(crawl, 120, seed=1, files_per_dump=1)
    results = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        data = demo_recipe(crawl, out, small_tokenizer, ["format", "clean", "dedup", "safe", "quality", "tokens"],
                           executor=executor, tasks=3)
        extract = next(step for step in data["stage"][0]["steps"] if step["step"] == "extract")
        extract["backend"] = "resiliparse"   # the fast extractor keeps this test short
        summary = run_pipeline(build_pipeline(data, str(DEMO_RECIPE)), log=lambda *_: None)
        assert summary["executor"] == executor and summary["stages"]["dedup"]["ran"] == 3 + 2 + 1 + 3
        results[executor] = outputs(out)
    assert results["local"] == results["ray"]
    assert any(k.startswith("tokens/") for k in results["ray"]) and any("_work/dedup/edges" in k for k in results["ray"])
