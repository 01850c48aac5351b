"""bench/copy_onset.py's copy-accuracy probe (issue #19): an oracle that copies scores near 1, a model
that cannot scores near 0, and `--model` measures a saved checkpoint or names what is wrong."""

import random
import subprocess
import sys
from pathlib import Path

import torch

from lmforge.model import InternLM2, preset, save_model

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
from copy_onset import copy_accuracy, copy_rows  # noqa: E402


class Copier(torch.nn.Module):
    """An induction oracle: after the current token's first earlier occurrence since the last BOS,
    predict what followed it; with none (the first copy, unscored, and its last token), predict the
    segment's first token."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        out = torch.zeros(*x.shape, self.vocab)
        for b, row in enumerate(x.tolist()):
            start = 0
            for t, tok in enumerate(row):
                if tok == 1:
                    start = t
                earlier = [i for i in range(start + 1, t) if row[i] == tok]
                guess = row[earlier[0] + 1] if earlier else row[min(start + 1, len(row) - 1)]
                out[b, t, guess] = 1.0
        return out


class Constant(torch.nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        out = torch.zeros(*x.shape, self.vocab)
        out[..., 3] = 1.0
        return out


def test_the_probe_tells_a_copier_from_a_model_that_cannot_copy():
    x, y = copy_rows(random.Random(123), 8, 128, 64)
    assert copy_accuracy(Copier(67), x, y) > 0.9  # below 1 where a segment repeats a symbol
    assert copy_accuracy(Constant(67), x, y) < 0.1


def test_model_flag_measures_a_saved_checkpoint(tmp_path):
    model = InternLM2(preset("tiny", vocab_size=256, max_seq_len=64))
    model.init_weights(0)
    save_model(model, tmp_path / "m")
    run = [sys.executable, str(BENCH / "copy_onset.py"), "--model", str(tmp_path / "m"), "--seq", "64"]
    done = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "copy accuracy 0.0" in done.stdout and "[3, 256)" in done.stdout  # random weights do not copy
    bad = subprocess.run(run + ["--symbols", "300"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--symbols 300: the model has 256 tokens" in bad.stderr
    missing = subprocess.run([*run[:3], str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no config.json" in missing.stderr
