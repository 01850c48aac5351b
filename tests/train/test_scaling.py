"""The scaling sweep writes runs that the evaluation's scaling fit reads."""

import json

from rich.console import Console

from lmforge.eval.scaling import run_scaling
from lmforge.model import preset
from lmforge.train import TrainSection
from lmforge.train.scaling import sweep


def test_sweep_writes_a_fittable_file(dataset, tmp_path):
    root, tok = dataset
    cfgs = {f"d{d}": preset("tiny", vocab_size=tok.vocab_size, dim=d, n_layers=1, ffn_dim=2 * d, max_seq_len=64)
            for d in (32, 64, 128)}
    tc = TrainSection(shards=str(root / "train"), val_shards=str(root / "val"), steps=6, seq_len=32, global_batch=4,
                      micro_batch=4, warmup_steps=1, val_every=6, ckpt_every=100, tensorboard=False, val_rows=8)
    path = sweep(cfgs, tc, tmp_path, console=Console(quiet=True))
    runs = json.loads(path.read_text())
    assert [r["name"] for r in runs] == list(cfgs)
    assert runs[0]["flops"] < runs[1]["flops"] < runs[2]["flops"]
    assert all(r["loss"] > 0 for r in runs)
    fit = run_scaling(path)
    assert (tmp_path / "sweep.png").is_file() and fit["alpha"] >= 0
