"""Compiled blocks and bfloat16 under 2D sequence parallelism (2 gloo processes, the tiny model).

tests/train/seqpar_compile_worker.py trains one step with the ring (head 1 x context 2) and the
all-to-all (head 2 x context 1) against one float32 process. `compile = true`: every block is
compiled around the attention core (which stays eager, `torch.compiler.disable`): loss and
gradients match within 1e-5 (the weights after AdamW within 2e-5), the ring run once per layer
and row.
`dtype = "bfloat16"` (FSDP2 computes in bf16): the loss within 1% and every gradient within 5%
of the largest float32 gradient (bf16 keeps 8 mantissa bits).
"""

import json

import pytest

from tests.train import seqpar_compile_worker as worker
from tests.train.seqpar_train_worker import ROWS, TINY, spawn_report


def _spawn(tmp_path, *names: str) -> list[dict]:
    lines = [json.loads(line) for line in spawn_report(worker.run, tmp_path, 2, names, name="report.jsonl")]
    assert len(lines) == sum(c[0] in names for c in worker.CASES)
    return lines


@pytest.mark.slow
def test_compiled_blocks_train_like_one_process(tmp_path):
    for r in _spawn(tmp_path, "compile"):
        assert r["loss_rel"] <= 1e-6 and r["grad_abs"] <= 1e-5, r
        assert r["error"] <= 2e-5, r  # with the weights after AdamW: compiled float ops round differently
        assert r["ring_calls"] == ROWS * TINY.n_layers, r  # each rank gets both rows (dp = 1)


def test_bfloat16_trains_close_to_float32(tmp_path):
    for r in _spawn(tmp_path, "bfloat16"):
        assert r["loss_rel"] <= 1e-2 and r["grad_rel"] <= 5e-2, r
