"""Language-modelling loss: token cross-entropy plus Baichuan 2's max-z loss.

Max-z loss (Baichuan 2, arXiv 2309.10305, section 2.4; docs/papers.md §3): add `coef * z^2` where
z is the largest logit of each token, which keeps logits from drifting to large values that make
bf16 inference fragile. The paper uses coef = 2e-4.

Two implementations of the same function:
- `lm_loss(logits, targets)`: the plain formula over logits the caller computed;
- `linear_lm_loss(hidden, head_weight, targets)`: the output projection fused into the loss and run
  over chunks of tokens, so the (tokens, vocab) logits are never held in full. Each chunk's
  logits, softmax and logit gradient are made and used in place, and the gradients of the hidden
  states and of the head are computed during the forward pass (a softmax-minus-one-hot gradient
  needs nothing else) and handed to autograd at backward. With InternLM2's 92,544-token vocabulary
  the full fp32 logits of one 4k sequence take 1.5 GB, twice over with their gradient; the chunked
  form needs one chunk. It also skips the passes a separate loss makes over the logits (their
  gradient's zero-fill, the log-softmax backward). The model uses it when given `targets`
  (`InternLM2.forward(..., targets=...)`); the tests check it against `lm_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
CHUNK_ELEMENTS = 1 << 24  # logits per chunk of linear_lm_loss: 64 MiB in fp32


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0,
            ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean loss over the non-ignored targets, and its parts for logging.

    logits (B, T, V) and targets (B, T) are already aligned (targets are the next tokens).
    """
    logits = logits.float()
    flat = logits.view(-1, logits.shape[-1])
    tgt = targets.reshape(-1)
    ce = F.cross_entropy(flat, tgt, ignore_index=ignore_index)
    parts = {"ce": ce.detach()}
    loss = ce
    if z_loss > 0:
        keep = tgt != ignore_index
        z = flat.max(dim=-1).values[keep]
        zl = z_loss * z.pow(2).mean() if z.numel() else flat.sum() * 0
        parts["z_loss"] = zl.detach()
        loss = loss + zl
    return loss, parts


def linear_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0,
                   ignore_index: int = IGNORE_INDEX, chunk_elements: int = CHUNK_ELEMENTS,
                   divisor: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`lm_loss(F.linear(hidden, weight), targets, z_loss)` without materialising the logits.

    hidden (B, T, D) final hidden states, weight (V, D) the output head, targets (B, T). Chunks
    hold about `chunk_elements` logits. The loss and its parts are averaged over the kept targets,
    or, with `divisor`, summed and divided by it (the trainer divides by the targets of the whole
    global batch, of which these are a part). Under autocast the matmuls run in the autocast dtype, as
    F.linear would; softmax and loss in fp32. A batch whose targets are all ignored has loss 0.
    The gradients are made in the forward pass, so calling backward twice through it is an error.
    """
    h = hidden.reshape(-1, hidden.shape[-1])
    tgt = targets.reshape(-1)
    rows = max(1, chunk_elements // weight.shape[0])
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        loss, ce, zl = _LinearCrossEntropy.apply(h, weight, tgt, z_loss, ignore_index, rows, divisor)
    else:
        loss, ce, zl, _, _ = _chunked(h, weight, tgt, z_loss, ignore_index, rows, divisor, grads=False)
    parts = {"ce": ce.detach()}
    if z_loss > 0:
        parts["z_loss"] = zl.detach()
    return loss, parts


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype that matmuls on `t` compute in: autocast's where it is on for t's device, else t's."""
    dev = t.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else t.dtype


def _chunked(h, weight, tgt, z_loss: float, ignore_index: int, rows: int, divisor: float | None, grads: bool):
    """(loss, ce, z-loss, d loss/d h, d loss/d weight), summed over the kept targets and divided by
    `divisor` (None: their number); the gradients None unless `grads`."""
    dtype = compute_dtype(h)
    with torch.autocast(h.device.type, enabled=False):
        hc, w = h.to(dtype), weight.to(dtype)
        keep = tgt != ignore_index
        # a tensor: no host sync on GPU
        n = keep.sum().clamp(min=1).float() if divisor is None else torch.tensor(float(divisor), device=h.device)
        safe = tgt.masked_fill(~keep, 0)
        ce_sum = h.new_zeros((), dtype=torch.float32)
        z_sum = h.new_zeros((), dtype=torch.float32)
        gh = torch.empty_like(hc) if grads else None
        gw = None  # the head's gradient, summed over the chunks in fp32
        for s in range(0, hc.shape[0], rows):
            e = min(s + rows, hc.shape[0])
            logits = (hc[s:e] @ w.t()).float()  # (c, V)
            k, t = keep[s:e], safe[s:e]
            idx = torch.arange(e - s, device=h.device)
            if z_loss > 0:
                zmax, zarg = logits.max(dim=-1)
                z_sum += (zmax.square() * k).sum()
            logp = logits.log_softmax(-1)
            del logits
            ce_sum -= (logp[idx, t] * k).sum()
            if not grads:
                continue
            # d ce/d logits = (softmax - onehot(target)) / n, for kept tokens; z-loss adds
            # 2 coef z / n at each token's argmax.
            g = logp.exp_()
            g[idx, t] -= 1.0
            scale = k.float() / n
            g.mul_(scale[:, None])
            if z_loss > 0:
                g[idx, zarg] += (2.0 * z_loss) * zmax * scale
            g = g.to(dtype)
            torch.mm(g, w, out=gh[s:e])
            if gw is None:
                gw = (g.t() @ hc[s:e]).float()  # the first chunk's product is the buffer: no zero fill
            elif g.dtype == gw.dtype:
                gw.addmm_(g.t(), hc[s:e])
            else:
                gw += (g.t() @ hc[s:e]).float()
        ce = ce_sum / n
        zl = z_loss * z_sum / n
        loss = ce + zl  # a tensor of its own: ce and zl are returned beside it, marked non-differentiable
    if grads:
        gw = gw if gw is not None else torch.zeros(w.shape, dtype=torch.float32, device=w.device)  # no tokens
        gh, gw = gh.to(h.dtype), gw.to(weight.dtype)
    return loss, ce, zl, gh, gw


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, tgt, z_loss, ignore_index, rows, divisor):
        loss, ce, zl, gh, gw = _chunked(h, weight, tgt, z_loss, ignore_index, rows, divisor, grads=True)
        ctx.grads = [gh, gw]
        ctx.mark_non_differentiable(ce, zl)
        return loss, ce, zl

    @staticmethod
    def backward(ctx, g_loss, _g_ce, _g_zl):
        if ctx.grads is None:
            raise RuntimeError("linear_lm_loss: backward called twice; its gradients are computed once, in the "
                               "forward pass. Run the forward again instead of retain_graph=True.")
        gh, gw = ctx.grads
        ctx.grads = None
        # Scale by the incoming gradient; on CPU skip the two passes when it is exactly 1 (a plain
        # loss.backward()), on GPU always scale rather than synchronise to find out.
        if not (g_loss.device.type == "cpu" and g_loss.item() == 1.0):
            gh, gw = gh.mul_(g_loss), gw.mul_(g_loss)
        return gh, gw, None, None, None, None, None
