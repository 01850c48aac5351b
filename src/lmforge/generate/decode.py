"""The one-token decode step of the engine: the model's own forward over a fixed-shape cache view.

The prefill and every later token run through `InternLM2.forward_hidden`, the same modules that
train. A decode step differs only in what it hands them:

- eagerly, the KV cache itself (each row attends to its filled slots); compiled, fixed shapes: a
  `DecodeView` of the cache, in which attention runs over all `max_len` slots with a mask of the
  valid ones and each row's new key/value is written at a slot given as a tensor, so one compiled
  graph serves every step of a generation (no recompile per step);
- the weight layouts of `lmforge.model.linear`: on CPU (fp32) each `Linear` multiplies by a copy of
  its weight laid out for the kernel that reads it fastest (a decode step is bound by streaming
  every matrix once per token); `prepare_kernels` makes the copies at the start of a generation
  and keeps them while the parameters are unchanged, so training between rollouts is seen;
- it can be compiled (`compile=True`): inductor fuses the elementwise work (norms, RoPE, SwiGLU,
  residuals) into a few C++ loops and removes most of the per-op Python/ATen overhead. The first
  (batch size, cache length) shape compiles a graph for that shape; the second makes torch.compile
  build one with symbolic sizes (slower to compile), which every later shape reuses. If compilation
  fails the step runs eagerly, with a warning.

The logits match a plain forward up to float rounding (another matmul kernel, attention over masked
slots, fused reductions); tests check 1e-5 and that greedy tokens are the same.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings

import torch

from lmforge.generate.kv_cache import DecodeView, KVCache
from lmforge.model.linear import Linear, kernels_enabled, prepare_kernels

log = logging.getLogger(__name__)

# Seconds spent compiling, per (batch, cache length) shape compiled in this process (for reports).
compile_seconds: dict[tuple[int, int], float] = {}


def _step(model, ids: torch.Tensor, slots: torch.Tensor, valid: torch.Tensor, inv_freq: torch.Tensor,
          k_cache: list[torch.Tensor], v_cache: list[torch.Tensor], uniform: bool) -> torch.Tensor:
    """Logits (B, vocab) of one new token per row; writes its keys/values at each row's slot.

    ids (B,) token ids; slots (B,) the rows' lengths = the new tokens' slots and positions; valid
    (B, max_len) bool, True at the real slots (this step's included); inv_freq (head_dim/2,);
    k_cache/v_cache: per layer (B, Hkv, max_len, D); uniform: all rows have the same length.
    """
    h = model.forward_hidden(ids[:, None], kv_cache=DecodeView(k_cache, v_cache, slots, valid, inv_freq, uniform))
    return model.logits(h[:, 0])


@functools.cache
def _compiled_step():
    # The fused elementwise loops of one decode step are a few thousand floats: too little work for
    # a second thread. A parallel region each (inductor's default from 512 elements on) makes every
    # step wait for the other core, which on a shared machine can make the compiled step slower than
    # the eager one (eager ATen stays serial below 32k elements).
    return torch.compile(_step, fullgraph=True, options={"cpp.min_chunk_size": 1 << 16})


class DecodeStep:
    """Runs the decode steps of one generation over `cache` (the prefill filled it with the model)."""

    def __init__(self, model, cache: KVCache, compile: bool = False, kernel: str | None = None):
        """kernel: one matmul kernel for every matrix (tests); by default each layer's fastest."""
        self.model, self.cache, self.compile = model, cache, compile
        self._guarded = None
        self.kernels = prepare_kernels(model, cache.batch_size, kernel)
        if compile:
            # The weight copies are plain tensors to torch.compile, whose sizes it would make symbolic
            # once they change (another kernel at another batch size), heads and all: keep them static.
            for m in model.modules():
                if isinstance(m, Linear) and m.kernel_weight is not None:
                    torch._dynamo.mark_static(m.kernel_weight)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, vocab) for the next token ids (B,) of every row; advances the cache."""
        cache = self.cache
        with kernels_enabled():
            if self.compile:
                logits = self._compiled((self.model, ids, *cache.decode_inputs(), cache.k, cache.v, cache.uniform))
                if logits is not None:
                    cache.advance_one()
                    return logits
            # Eagerly, shapes need not be fixed: the cache's own view attends to the filled slots only.
            return self.model.logits(self.model.forward_hidden(ids[:, None], kv_cache=cache)[:, 0])

    def _compiled(self, args) -> torch.Tensor | None:
        shape = (self.cache.batch_size, self.cache.max_len)
        first = shape not in compile_seconds
        t0 = time.perf_counter()
        try:
            if (shape, self.cache.uniform) == self._guarded:
                # The inputs differ from the last step's only in their values (same model, kernels,
                # tensors and sizes), so its guards hold: skip checking them (~2% of a step).
                with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
                    out = _compiled_step()(*args)
            else:
                out = _compiled_step()(*args)
                self._guarded = (shape, self.cache.uniform)
        except Exception as e:  # noqa: BLE001 - any compiler failure: run eagerly instead
            warnings.warn(f"compiling the decode step failed, decoding eagerly: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=3)
            self.compile = False
            return None
        if first:
            compile_seconds[shape] = time.perf_counter() - t0
            log.info("compiled the decode step for batch %d, cache length %d in %.1f s", *shape,
                     compile_seconds[shape])
        return out
