"""The compiled decode step in the default suite: one cheap run, so CI compiles it at least once.

The thorough comparison (batches of mixed lengths, rows that stop early, the 32-token window) is
`tests/generate/test_decode.py::test_compiled_decode_gives_the_eager_tokens`, marked slow.
"""

import warnings

import pytest

from lmforge.generate import SamplingParams, generate
from lmforge.generate import decode as decode_mod
from lmforge.train.parallel import has_cxx_compiler
from tests.helpers import tiny_model


@pytest.mark.skipif(not has_cxx_compiler(), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_decode_step_gives_the_eager_tokens():
    model = tiny_model(seed=5, dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64)
    # 30 + 4 tokens cross the 32-token window: the RoPE frequencies of the steps beyond it are made
    # afresh, those inside it come from a cache; the step must take both without recompiling (it
    # once fell back to eager there, its guards skipped)
    prompts, params = [list(range(5, 35))], SamplingParams(max_new_tokens=4)
    eager = generate(model, prompts, params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = generate(model, prompts, params, compile=True)
    assert not [w for w in caught if "decoding eagerly" in str(w.message)]  # no fallback to eager
    assert decode_mod.compile_seconds  # the step was compiled in this process (and timed)
    assert [c.token_ids for c in compiled] == [c.token_ids for c in eager]
