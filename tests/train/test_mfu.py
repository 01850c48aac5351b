"""MFU's two halves: the model FLOPs per token against PyTorch's own FLOP counter and the causal
pair count, and a CPU peak that a busy neighbour cannot shrink (lmforge.train.metrics)."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from lmforge.model import InternLM2, ModelConfig, flops_per_token
from lmforge.train import metrics


def test_linear_flops_match_torch_flop_counter():
    cfg = ModelConfig(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192, max_seq_len=64)
    model = InternLM2(cfg)
    model.init_weights(0)
    B, T = 2, 32
    x = torch.randint(0, 512, (B, T))
    with FlopCounterMode(display=False) as counter:
        model(x).float().logsumexp(-1).sum().backward()
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    attention = sum(n for op, n in by_op.items() if "attention" in op)
    linear = counter.get_total_flops() - attention
    attention_term = 6.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * T
    expected = (flops_per_token(cfg, T) - attention_term) * B * T
    assert abs(linear - expected) / expected < 0.01


def test_causal_attention_is_counted_once():
    cfg = ModelConfig(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192)
    T = 1024
    # A causal row computes T(T+1)/2 (query, key) pairs; each costs 2 * head_dim FLOPs for the score and
    # 2 * head_dim for the value, per head and layer, forward; training is 3x forward.
    pairs = T * (T + 1) / 2
    exact = 3 * 4 * cfg.head_dim * cfg.n_heads * cfg.n_layers * pairs / T
    counted = flops_per_token(cfg, T) - flops_per_token(cfg, 0)
    assert abs(counted - exact) / exact < 2 / T


def test_mfu_never_above_one():
    assert metrics.mfu(5e9, 1e10) == 0.5
    assert metrics.mfu(2e10, 1e10) == 1.0


def test_cpu_peak_keeps_the_best_figure_and_honours_the_override(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert metrics._remember_peak("cpu|fp32", 5e10) == 5e10
    assert metrics._remember_peak("cpu|fp32", 1e10) == 5e10  # a busy machine measures less: the best stays
    assert metrics._remember_peak("cpu|fp32", 7e10) == 7e10
    metrics.measured_peak_flops.cache_clear()
    monkeypatch.setenv(metrics.PEAK_ENV, "123e9")
    assert metrics.measured_peak_flops("cpu") == 123e9
    metrics.measured_peak_flops.cache_clear()
    monkeypatch.delenv(metrics.PEAK_ENV)
    metrics._remember_peak(f"{metrics._cpu_name()}|{torch.float32}|n=128", 1e15)  # an earlier, better figure
    one_core = metrics.measured_peak_flops("cpu", n=128, iters=3) / torch.get_num_threads()
    assert one_core == 1e15  # never below a figure remembered for this CPU model
    metrics.measured_peak_flops.cache_clear()
