import math

import torch

from lmforge.model.rope import inv_frequencies, ntk_base, rope_inv_freq
from tests.helpers import tiny_config


def test_ntk_base_formula():
    # InternLM2 (InternLM2 report, arXiv 2403.17297; docs/papers.md §1):
    # base * ((s * L / Lmax) - (s - 1)) ** (d / (d - 2)) once L > Lmax.
    base, lmax, s, d = 1e6, 32768, 2.0, 128
    assert ntk_base(base, 1000, lmax, s, d) == base
    L = 65536
    assert math.isclose(ntk_base(base, L, lmax, s, d), base * ((s * L / lmax) - (s - 1)) ** (d / (d - 2)))


def test_inverse_frequencies_grow_the_base_only_beyond_the_window():
    cfg = tiny_config()
    short = inv_frequencies(cfg, cfg.max_seq_len)
    plain = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
    torch.testing.assert_close(short, plain)
    long = inv_frequencies(cfg, 4 * cfg.max_seq_len)
    assert (long[1:] < short[1:]).all()  # a larger base means lower frequencies


def test_lengths_known_as_ints_take_the_same_base_as_computed_ones():
    # The KV cache and the decode step pass the length as an int and take a cached fast path
    # inside the window; it must switch to the NTK base exactly where the tensor formula does.
    cfg = tiny_config()
    for n in (1, cfg.max_seq_len - 1, cfg.max_seq_len, cfg.max_seq_len + 1, cfg.max_seq_len + 5, 3 * cfg.max_seq_len):
        torch.testing.assert_close(rope_inv_freq(cfg, n, torch.device("cpu")), inv_frequencies(cfg, torch.tensor(n)),
                                   rtol=0, atol=0)
