"""2D sequence parallelism over 2, 4 (and, slow, 8) gloo processes equals one-process attention.

One spawn per world size runs every case (tests/train/seqpar_grid.py): every head x context
split of the world (dp the rest), both placements, every double-ring window, MHA / GQA / MQA
(kv heads replicated when the head group exceeds them), causal rows and packed rows whose document
boundaries fall inside zigzag chunks. Output and dq/dk/dv match SDPA within 1e-5 (float32).
"""

import pytest
import torch.multiprocessing as mp

from tests.train import seqpar_grid


def _spawn(world: int, seq_len: int, tmp_path) -> None:
    mp.spawn(seqpar_grid.run, args=(world, str(tmp_path / "store"), seq_len), nprocs=world, join=True)


def test_two_processes(tmp_path):
    _spawn(2, 24, tmp_path)


def test_four_processes(tmp_path):
    _spawn(4, 24, tmp_path)


@pytest.mark.slow
def test_eight_processes(tmp_path):
    _spawn(8, 48, tmp_path)
