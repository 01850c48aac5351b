"""The one-token decode step of the engine: a functional forward over the preallocated KV cache.

The model's own forward serves the prefill; every later token goes through `DecodeStep`, which
computes the same function (same weights, same operations in the same order) but

- has fixed shapes: attention runs over all `max_len` slots of the cache with the cache's `valid`
  mask, and the new key/value is written at a slot given as a tensor, so one compiled graph serves
  every step of a generation (no recompile per step);
- on CPU (fp32) multiplies by weights laid out for the kernel that reads them fastest, since a
  decode step is bound by streaming every weight matrix once per token: at batch 1 a transposed
  copy (`x @ W^T` with W^T stored row-major; MKL's kernel for that layout is ~25% faster than
  `F.linear`'s), at batch > 1 oneDNN-packed weights for the matrices of 1 MB and more (~1.5x MKL's
  sgemm at batch 8; smaller ones keep the transposed copy, oneDNN's fixed cost per call being
  larger than its gain there). The copies
  are made once and reused while the parameters are unchanged (their version counters are checked
  every generate call, so training between rollouts is seen; a model whose parameters are inference
  tensors gets fresh copies every call). They hold one extra copy of the weight matrices, which is
  why CUDA and other dtypes skip them and use the parameters as they are;
- can be compiled (`compile=True`): inductor fuses the elementwise work (norms, RoPE, SwiGLU,
  residuals) into a few C++ loops and removes most of the per-op Python/ATen overhead. The first
  (batch size, cache length) shape compiles a graph for that shape; the second makes torch.compile
  build one with symbolic sizes (slower to compile), which every later shape reuses. If compilation
  fails the step runs eagerly, with a warning.

The logits match the model's forward up to float rounding (a different matmul kernel, attention
over masked slots, fused reductions); tests check that greedy tokens are the same.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
import weakref

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from lmforge.generate.kv_cache import KVCache
from lmforge.model.model import qkv_heads
from lmforge.model.norm import rms_norm
from lmforge.model.rope import cos_sin, rope_inv_freq

log = logging.getLogger(__name__)

# Seconds spent compiling, per (batch, cache length) shape compiled in this process (for reports).
compile_seconds: dict[tuple[int, int], float] = {}


def _linear_weights(model) -> list[torch.Tensor]:
    """The matrices of the decode step in order: per layer wqkv, wo, w1, w3, w2 (the head follows)."""
    ws = []
    for layer in model.layers:
        a, f = layer.attention, layer.feed_forward
        ws += [a.wqkv.weight, a.wo.weight, f.w1.weight, f.w3.weight, f.w2.weight]
    return ws


_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# At batch > 1, oneDNN's packed kernel wins from about this many weights (1 MB of fp32) on; below
# it, its fixed cost per call (~40 us here) outweighs what it saves.
PACKED_MIN_NUMEL = 1 << 18


def matmul_kinds(model, device: torch.device, dtype: torch.dtype, batch: int) -> tuple[str, ...]:
    """How the decode step multiplies by each of its matrices (the linear maps, then the head):
    "t" (a transposed copy, x @ W^T: MKL's fastest matrix-vector product here), "mkldnn"
    (oneDNN-packed: ~1.5x MKL's sgemm at batch 8, ~2.5x for the LM head) or "linear" (F.linear on
    the parameter: CUDA, other dtypes)."""
    shapes = [w.shape for w in _linear_weights(model)] + [model.output.weight.shape]
    if device.type != "cpu" or dtype != torch.float32:
        return ("linear",) * len(shapes)
    packed = batch > 1 and torch.backends.mkldnn.is_available()
    return tuple("mkldnn" if packed and s.numel() >= PACKED_MIN_NUMEL else "t" for s in shapes)


def decode_weights(model, kinds: tuple[str, ...]) -> list[torch.Tensor]:
    """The weights of the decode step: the linear maps and the head (NormHead applied), each laid out
    for its kind (a transposed copy, (in, out), for "t"), then the norm weights and the embedding.
    Cached per model while its parameters are unchanged (one layout at a time, to hold at most one
    extra copy of the weights)."""
    params = list(model.parameters())
    key = None  # inference tensors (a model built under inference_mode) have no version counter:
    if not any(p.is_inference() for p in params):  # then the copies are rebuilt every generation
        key = (kinds, tuple((p.data_ptr(), p._version) for p in params))
    hit = _prepared.get(model)
    if hit is not None and key is not None and hit[0] == key:
        return hit[1]
    _prepared.pop(model, None)  # free the previous copies first
    with torch.no_grad():
        mats = []
        for w, kind in zip([*_linear_weights(model), model.head_weight()], kinds, strict=True):
            if kind == "t":
                w = w.t().contiguous()
            elif kind == "mkldnn":
                w = w.detach()
                _packed_weight(w)
            mats.append(w)
        norms = [w for layer in model.layers for w in (layer.attention_norm.weight, layer.ffn_norm.weight)]
        out = [*mats, *norms, model.norm.weight, model.tok_embeddings.weight]
    _prepared[model] = (key, out)
    return out


# oneDNN-packed copies of weight matrices, keyed by the dense tensor (and checked against its version);
# `packs` counts the packings, for tests.
_packed = WeakIdKeyDictionary()
packs = 0


def _packed_weight(w: torch.Tensor) -> torch.Tensor:
    version = None if w.is_inference() else w._version  # inference: `w` is rebuilt per generation
    hit = _packed.get(w)
    if hit is None or hit[0] != version:
        with torch.no_grad():
            hit = (version, torch.ops.mkldnn._reorder_linear_weight(w.detach()))
        global packs
        packs += 1
        _packed[w] = hit
    return hit[1]


@torch.library.custom_op("lmforge::packed_linear", mutates_args=())
def packed_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """F.linear(x, weight) through oneDNN with `weight` packed once (an opaque op for torch.compile,
    which cannot hold the packed tensor itself)."""
    return torch.ops.mkldnn._linear_pointwise(x, _packed_weight(weight), None, "none", [], "")


@packed_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


def _step(weights: list[torch.Tensor], ids: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor,
          slot: torch.Tensor, valid: torch.Tensor, k_cache: list[torch.Tensor], v_cache: list[torch.Tensor], *,
          n_layers: int, n_heads: int, n_kv_heads: int, head_dim: int, eps: float, kinds: tuple[str, ...]
          ) -> torch.Tensor:
    """Logits (B, vocab) of one new token per row; writes its keys/values at cache slot `slot`.

    ids (B,) token ids; positions (B, 1); inv_freq (head_dim/2,); slot (1,) long; valid (B, max_len)
    bool, True at the real slots (this step's included); k_cache/v_cache: per layer (B, Hkv, max_len, D).
    """
    n_mats = 5 * n_layers + 1
    mats, norms = weights[:n_mats], weights[n_mats:]
    emb = norms[-1]

    def lin(x, i):
        kind = kinds[i]
        if kind == "t":
            return x @ mats[i]
        if kind == "mkldnn":
            return packed_linear(x, mats[i])
        return F.linear(x, mats[i])

    B = ids.shape[0]
    r = n_heads // n_kv_heads
    cos, sin = cos_sin(positions, inv_freq)  # as rope_cos_sin: (B, 1, head_dim)
    cos, sin = cos[:, :, None, None], sin[:, :, None, None]
    mask = valid[:, None, None, :]
    h = F.embedding(ids, emb)  # (B, dim)
    for i in range(n_layers):
        x = rms_norm(h, norms[2 * i], eps)
        q, k, v = qkv_heads(lin(x, 5 * i)[:, None], cos, sin, n_kv_heads, head_dim)  # k, v: (B, Hkv, 1, D)
        kc, vc = k_cache[i], v_cache[i]
        kc.index_copy_(2, slot, k)
        vc.index_copy_(2, slot, v)
        out = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, enable_gqa=r > 1)
        h = h + lin(out.transpose(1, 2).reshape(B, n_heads * head_dim), 5 * i + 1)
        x = rms_norm(h, norms[2 * i + 1], eps)
        h = h + lin(F.silu(lin(x, 5 * i + 2)) * lin(x, 5 * i + 3), 5 * i + 4)
    return lin(rms_norm(h, norms[2 * n_layers], eps), n_mats - 1)


@functools.cache
def _compiled_step():
    # The fused elementwise loops of one decode step are a few thousand floats: too little work for
    # a second thread. A parallel region each (inductor's default from 512 elements on) makes every
    # step wait for the other core, which on a shared machine can make the compiled step slower than
    # the eager one (eager ATen stays serial below 32k elements).
    return torch.compile(_step, fullgraph=True, options={"cpp.min_chunk_size": 1 << 16})


class DecodeStep:
    """Runs the decode steps of one generation over `cache` (the prefill filled it with the model)."""

    def __init__(self, model, cache: KVCache, compile: bool = False, kind: str | None = None):
        """kind: one matmul kind for every matrix (tests); by default `matmul_kinds` chooses."""
        self.cfg, self.cache = model.cfg, cache
        self.kinds = matmul_kinds(model, cache.valid.device, cache.k[0].dtype, cache.valid.shape[0])
        if kind is not None:
            self.kinds = (kind,) * len(self.kinds)
        self.weights = decode_weights(model, self.kinds)
        self.compile = compile
        c = self.cfg
        self.kwargs = {"n_layers": c.n_layers, "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads,
                       "head_dim": c.head_dim, "eps": c.norm_eps, "kinds": self.kinds}

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, vocab) for the next token ids (B,) of every row; advances the cache."""
        cache = self.cache
        slot = torch.tensor([cache.length], device=ids.device)
        positions = cache.step_positions()
        inv_freq = rope_inv_freq(self.cfg, cache.seq_len, ids.device)
        args = (self.weights, ids, positions, inv_freq, slot, cache.valid, cache.k, cache.v)
        logits = None
        if self.compile:
            logits = self._compiled(args)
        if logits is None:
            logits = _step(*args, **self.kwargs)
        cache.advance(1)
        return logits

    def _compiled(self, args) -> torch.Tensor | None:
        shape = (self.cache.valid.shape[0], self.cache.max_len)
        first = shape not in compile_seconds
        t0 = time.perf_counter()
        try:
            out = _compiled_step()(*args, **self.kwargs)
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
