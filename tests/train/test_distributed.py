"""Training as a user runs it, in subprocesses: FSDP2 over 2 gloo processes vs 1 process, a
2-process checkpoint resumed by 1 process, and exact resume after SIGKILL and SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _train_cmd(recipe, out, root, nproc=1, steps=8, extra=()):
    sets = [f"train.shards={root}/train", f"train.val_shards={root}/val", f"train.tokenizer={root}/tokenizer",
            f"train.out_dir={out}", f"train.steps={steps}", "train.seq_len=64", "train.global_batch=4",
            "train.micro_batch=2", "train.warmup_steps=2", "train.val_every=0", "train.tensorboard=false",
            "train.keep_checkpoints=10", "model.max_seq_len=128", *extra]
    args = ["-m", "lmforge.cli", "train", str(recipe), *[a for s in sets for a in ("--set", s)]]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return [sys.executable, *args]


def _run(cmd):
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _losses(out):
    lines = (out / "main" / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def _weights(out):
    return load_file(str(out / "main" / "hf" / "model.safetensors"))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "train.toml"
    path.write_text('[model]\npreset = "tiny"\n')
    return path


def test_fsdp2_two_processes_match_one_and_reshard_on_resume(dataset, recipe, tmp_path):
    root, _ = dataset
    one, two = tmp_path / "one", tmp_path / "two"
    _run(_train_cmd(recipe, one, root, extra=["train.ckpt_every=4"]))
    _run(_train_cmd(recipe, two, root, nproc=2, extra=["train.ckpt_every=4"]))
    a, b = _losses(one), _losses(two)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-5

    # Resume the 2-process run from its step-4 checkpoint with 1 process: DCP reshards.
    ckpts = two / "main" / "checkpoints"
    assert {p.name for p in ckpts.iterdir()} >= {"step_00000004", "step_00000008"}
    (ckpts / "latest").write_text("step_00000004\n")
    (two / "main" / "DONE").unlink()
    proc = _run(_train_cmd(recipe, two, root, extra=["train.ckpt_every=4"]) + ["--resume"])
    assert "written by 2 process(es)" in proc.stdout
    c = _losses(two)
    assert max(abs(a[s] - c[s]) for s in range(5, 9)) <= 1e-5
    wa, wc = _weights(one), _weights(two)
    assert max((wa[k] - wc[k]).abs().max().item() for k in wa) <= 1e-5


def test_tied_embeddings_and_shuffled_rows_under_fsdp2_match_one_process(dataset, recipe, tmp_path):
    """FSDP2 shards the tied matrix once (the root holds both of its uses) and the shuffled rows are
    the same global rows split over the processes: 2 processes give 1 process's losses."""
    root, _ = dataset
    extra = ["model.tie_embeddings=true", "model.embed_init_std=0.1", "train.shuffle_rows=true"]
    one, two = tmp_path / "one", tmp_path / "two"
    _run(_train_cmd(recipe, one, root, steps=4, extra=extra))
    _run(_train_cmd(recipe, two, root, nproc=2, steps=4, extra=extra))
    a, b = _losses(one), _losses(two)
    assert sorted(a) == sorted(b) == list(range(1, 5))
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-5
    wa, wb = _weights(one), _weights(two)
    assert "output.weight" not in wb  # exported tied: the matrix once
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-5


@pytest.fixture(scope="module")
def straight(dataset, recipe, tmp_path_factory):
    root, _ = dataset
    out = tmp_path_factory.mktemp("straight")
    _run(_train_cmd(recipe, out, root, steps=30, extra=["train.ckpt_every=5"]))
    return out


def _interrupt(cmd, out, sig):
    """Start training, send `sig` as soon as the first checkpoint exists, return the exit code."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latest = out / "main" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    assert not (out / "main" / "DONE").exists(), "the run finished before it could be interrupted"
    return proc.returncode, output


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_resume_is_exact(dataset, recipe, straight, tmp_path, sig):
    root, _ = dataset
    out = tmp_path / "run"
    cmd = _train_cmd(recipe, out, root, steps=30, extra=["train.ckpt_every=5"])
    code, output = _interrupt(cmd, out, sig)
    if sig == signal.SIGTERM:
        assert code == 0 and "checkpoint written" in output  # graceful: finish the step, checkpoint, exit
    else:
        assert code == -signal.SIGKILL
    _run(cmd + ["--resume"])
    assert _losses(out) == _losses(straight)  # bit-exact on CPU
    ws, wr = _weights(straight), _weights(out)
    assert all(torch.equal(ws[k], wr[k]) for k in ws)


def test_convert_exports_a_two_process_training_checkpoint(dataset, recipe, tmp_path):
    """`lmforge convert` reads a DCP checkpoint written by 2 processes into one HF directory."""
    from lmforge.cli import main

    root, _ = dataset
    out = tmp_path / "run"
    _run(_train_cmd(recipe, out, root, nproc=2, steps=4, extra=["train.ckpt_every=4"]))
    ckpt = out / "main" / "checkpoints" / "step_00000004"
    assert main(["convert", str(ckpt), str(tmp_path / "llama"), "--to", "llama"]) == 0
    assert main(["convert", str(tmp_path / "llama"), str(tmp_path / "back"), "--to", "internlm2"]) == 0
    exported, final = load_file(str(tmp_path / "back" / "model.safetensors")), _weights(out)
    assert exported.keys() == final.keys() and all(torch.equal(exported[k], final[k]) for k in final)
    assert (tmp_path / "llama" / "tokenizer.json").is_file()
