"""The model's linear maps, with a matmul kernel that inference may choose for the machine.

Training multiplies by the parameters with `F.linear`. A decode step is different: at batch 1 it
is bound by streaming every weight matrix once per token, and on CPU (fp32) the kernel that reads a
matrix fastest depends on its layout, so `Linear` can multiply by a copy of its weight laid out
for a faster kernel ("kernels"):

- "t": a transposed copy, `x @ W^T` with W^T stored row-major. MKL's kernel for that layout reads
  the weights ~25% faster than `F.linear`'s at batch 1;
- "mkldnn": oneDNN-packed weights, for matrices of 1 MB and more at batch > 1 (~1.5x MKL's sgemm
  at batch 8, ~2.5x for the LM head, which sgemm repacks on every call); smaller matrices keep
  the transposed copy, since oneDNN's fixed cost per call (~40 us here) outweighs its gain there;
- "linear": `F.linear` on the parameter (training, CUDA, other dtypes).

`prepare_kernels(model, batch)` chooses a kernel per matrix and makes the copies (the matrices of
layers that read the same input, SwiGLU's gate and up, stacked into one: `products`); they are kept
while the parameters are unchanged (their version counters are compared on every call, so a
training step between two generations is seen) and hold one extra copy of the matrices, one layout
at a time. The copies are used only inside `kernels_enabled()` and without gradients, so a
forward that trains, or one outside the engine's decode step, always reads the parameters.

`norm_rows` makes the layer Baichuan 2's NormHead (arXiv 2309.10305, section 2.4): the rows of the
weight are L2-normalised before the product, and the kernels' copies are of the normalised rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

# At batch > 1, oneDNN's packed kernel wins from about this many weights (1 MB of fp32) on; below
# it, its fixed cost per call outweighs what it saves.
PACKED_MIN_NUMEL = 1 << 18

_enabled = False  # set by `kernels_enabled()` around the engine's decode steps


class Linear(nn.Linear):
    """`nn.Linear` without bias whose inference product can run on a prepared weight copy."""

    def __init__(self, in_features: int, out_features: int, *, norm_rows: bool = False, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)
        self.norm_rows = norm_rows
        # The prepared copy (plain attributes, not parameters or buffers): of this layer's matrix, or
        # of the matrices of a group of layers that read the same input, stacked (see `products`).
        self.kernel = "linear"
        self.kernel_weight: torch.Tensor | None = None
        self.kernel_sizes: list[int] = [out_features]

    def effective_weight(self) -> torch.Tensor:
        """The matrix the layer multiplies by: the weight, with NormHead its rows normalised."""
        return F.normalize(self.weight, dim=-1) if self.norm_rows else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _enabled and self.kernel_weight is not None and not torch.is_grad_enabled():
            return _kernel_product(x, self.kernel, self.kernel_weight)
        return F.linear(x, self.effective_weight())

    def extra_repr(self) -> str:
        return super().extra_repr() + (", norm_rows=True" if self.norm_rows else "")


def products(x: torch.Tensor, *layers: Linear) -> tuple[torch.Tensor, ...]:
    """x times each layer's matrix, for layers that read the same input (SwiGLU's gate and up).
    Inside the decode step with a group copy prepared on the first layer, one product over the
    stacked matrices: one kernel call and one pass over x instead of one per layer."""
    first = layers[0]
    if _enabled and len(first.kernel_sizes) == len(layers) > 1 and not torch.is_grad_enabled():
        return _kernel_product(x, first.kernel, first.kernel_weight).split_with_sizes(first.kernel_sizes, dim=-1)
    return tuple(layer(x) for layer in layers)


def _kernel_product(x: torch.Tensor, kernel: str, weight: torch.Tensor) -> torch.Tensor:
    return x @ weight if kernel == "t" else packed_linear(x, weight)


@contextlib.contextmanager
def kernels_enabled() -> Iterator[None]:
    """Let every prepared `Linear` use its kernel copy inside this block (one decode step)."""
    global _enabled
    previous, _enabled = _enabled, True
    try:
        yield
    finally:
        _enabled = previous


def choose_kernel(shape: torch.Size, device: torch.device, dtype: torch.dtype, batch: int) -> str:
    """The fastest kernel for a (out, in) matrix multiplied by `batch` rows at a time."""
    if device.type != "cpu" or dtype != torch.float32:
        return "linear"
    packed = batch > 1 and torch.backends.mkldnn.is_available()
    return "mkldnn" if packed and shape.numel() >= PACKED_MIN_NUMEL else "t"


_prepared: WeakIdKeyDictionary = WeakIdKeyDictionary()  # model -> (its groups, the key its copies were made for)


def prepare_kernels(model: nn.Module, batch: int, kernel: str | None = None) -> tuple[str, ...]:
    """Choose the kernel of each group of `model.linear_groups()` (Linear layers that read the same
    input) for decoding `batch` rows and make its weight copy; returns the kernels in that order.
    `kernel` forces one kernel everywhere (tests). The copies are reused while the parameters are
    unchanged; a model whose parameters are inference tensors (built under inference_mode, so without
    version counters) gets fresh copies on every call."""
    # The engine asks at every step: the common case (nothing changed) is one pass over the weights.
    groups, last = _prepared.get(model, (None, None))
    if groups is None:
        groups = model.linear_groups()
    params = [m.weight for g in groups for m in g]
    versions = None if any(p.is_inference() for p in params) else tuple((p.data_ptr(), p._version) for p in params)
    if versions is not None and last is not None and last[1] == batch and last[2] == kernel and last[3] == versions:
        return last[0]
    kinds = tuple(kernel or choose_kernel(torch.Size([sum(m.out_features for m in g), g[0].in_features]),
                                          g[0].weight.device, g[0].weight.dtype, batch) for g in groups)
    with torch.no_grad():
        for group, kind in zip(groups, kinds, strict=True):
            for m in group:  # free the previous copies before making the next
                m.kernel, m.kernel_weight, m.kernel_sizes = "linear", None, [m.out_features]
            if kind == "linear":
                continue
            first = group[0]
            dense = torch.cat([m.effective_weight().detach() for m in group]) if len(group) > 1 else \
                first.effective_weight().detach()
            first.kernel, first.kernel_sizes = kind, [m.out_features for m in group]
            first.kernel_weight = dense.t().contiguous() if kind == "t" else dense
            if kind == "mkldnn":
                _packed_weight(dense)
    _prepared[model] = (groups, None if versions is None else (kinds, batch, kernel, versions))
    return kinds


# oneDNN-packed copies of weight matrices, keyed by the dense tensor (and checked against its
# version); `packs` counts the packings, for tests.
_packed = WeakIdKeyDictionary()
packs = 0


def _packed_weight(w: torch.Tensor) -> torch.Tensor:
    version = None if w.is_inference() else w._version  # inference: `w` is remade per generation
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
    return x.new_empty(*x.shape[:-1], weight.shape[0])
