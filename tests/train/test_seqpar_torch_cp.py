"""Our zigzag ring attention equals PyTorch's context parallelism (2 gloo processes).

PyTorch's `context_parallel` dispatches SDPA's fused CUDA kernels only; on a CPU the worker runs
PyTorch's ring functions with the CPU flash kernel (`lmforge.train.seqpar.torchcp`), and the
public path where it runs (skipped here with PyTorch's own error). Output and dq/dk/dv agree
within 1e-5 on every rank, and each matches one-process SDPA.
"""

import json

import pytest
import torch.multiprocessing as mp

from tests.train import seqpar_torch_cp_worker

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    pytest.importorskip("torch.distributed.tensor.experimental._context_parallel._attention",
                        reason="this torch has no context-parallel ring to compare with")
    tmp = tmp_path_factory.mktemp("torch_cp")
    out = tmp / "out.json"
    mp.spawn(seqpar_torch_cp_worker.run, args=(2, str(tmp / "store"), str(out)), nprocs=2, join=True)
    return json.loads(out.read_text())


def test_ring_equals_torch_ring(results):
    for rank, r in enumerate(results):
        for key, err in r.items():
            if key != "public_error" and key != "ours_vs_torch_public":
                assert err <= TOLERANCE, f"rank {rank} {key}: {err:.3g}"


def test_ring_equals_torch_public_context_parallel(results):
    if results[0]["public_error"] is not None:
        pytest.skip(f"torch's context_parallel does not run here: {results[0]['public_error']}")
    for rank, r in enumerate(results):
        assert r["ours_vs_torch_public"] <= TOLERANCE, f"rank {rank}: {r['ours_vs_torch_public']:.3g}"
