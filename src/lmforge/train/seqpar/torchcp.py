"""PyTorch's own context parallelism, as the reference our ring is measured against.

`torch.distributed.tensor.experimental.context_parallel` (the engine a user would pick first)
patches `F.scaled_dot_product_attention` to wrap its inputs as DTensors sharded on the sequence,
and its DTensor handler runs a ring (`_templated_ring_attention`, head-tail load balancing, which
for one context group is our zigzag layout) around the *fused* SDPA kernels: flash, efficient and
cuDNN, CUDA ops. On a CPU, SDPA picks `aten._scaled_dot_product_flash_attention_for_cpu`, which
the handler does not know (torch 2.13):

    NotImplementedError: Operator aten._scaled_dot_product_flash_attention_for_cpu.default does
    not have a sharding strategy registered.

and forcing the math backend decomposes SDPA into DTensor matmuls that meet the plain causal mask
("aten.add.Tensor got mixed torch.Tensor and DTensor"). So `torch_cp_attention` runs the public
path (`public=True`: the same dispatcher `context_parallel` installs) where it works, and on a CPU
calls PyTorch's ring functions themselves with the CPU flash kernel and its backward: the same
algorithm, merger and rotation (`set_rotate_method`), without the DTensor wrapping.
`public_api_error` says whether the public path runs here. These are private torch functions;
an ImportError names what moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

aten = torch.ops.aten


def _cp():
    from torch.distributed.tensor.experimental._context_parallel import _attention
    return _attention


class _TorchRing(torch.autograd.Function):
    """PyTorch's ring forward and backward around the CPU flash-attention kernels."""

    @staticmethod
    def forward(ctx, q, k, v, group):
        cp = _cp()
        out, lse = cp._templated_ring_attention(group, 2, aten._scaled_dot_product_flash_attention_for_cpu,
                                                q, k, v, is_causal=True)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.group = group
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _cp()._templated_ring_attention_backward(
            ctx.group, 2, aten._scaled_dot_product_flash_attention_for_cpu_backward.default,
            grad_out=dout.contiguous(), grad_out_name="grad_out", query=q, key=k, value=v, out=out,
            logsumexp=lse, is_causal=True, dropout_p=0.0)
        return dq, dk, dv, None


@contextmanager
def torch_cp_attention(mesh, public: bool, rotate: str = "allgather") -> Iterator[Callable]:
    """Yields `attend(q, k, v)`: causal attention of this rank's head-tail shard (B, H, T/C, D) by
    PyTorch's context parallelism over the 1-D `mesh`. `public`: through the SDPA patch and
    DTensor dispatch `context_parallel` installs (kept on for the whole block: the backward goes
    through it too); otherwise PyTorch's ring functions with the CPU flash kernels. `rotate`:
    "allgather" (PyTorch's default) or "alltoall" for the key/value blocks."""
    cp = _cp()
    saved = cp._cp_options.enable_load_balance, cp._cp_options.rotate_method
    cp.set_rotate_method(rotate)
    cp._cp_options.enable_load_balance = True  # head-tail shards: the causal blocks it skips assume them
    try:
        if public:
            cp._enable_context_parallel_dispatcher_impl(seq_dim=2, mesh=mesh)
            try:
                yield lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
            finally:
                cp._disable_context_parallel_dispatcher_impl()
        else:
            group = mesh.get_group()
            yield lambda q, k, v: _TorchRing.apply(q, k.contiguous(), v.contiguous(), group)
    finally:
        cp._cp_options.enable_load_balance, cp._cp_options.rotate_method = saved


def public_api_error(mesh, device: str | torch.device = "cpu") -> str | None:
    """None if PyTorch's public context-parallel SDPA runs a causal forward + backward here, else
    its error as "Type: first line". Collective: every rank of `mesh` must call it."""
    q, k, v = (torch.randn(1, 2, 8, 16, device=device, requires_grad=True) for _ in range(3))
    try:
        with torch_cp_attention(mesh, public=True) as attend:
            attend(q, k, v).sum().backward()
    except Exception as e:  # noqa: BLE001 - the refusal is the answer
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
    return None
