"""AdaLomo: low-memory optimization with adaptive learning rate (arXiv 2310.10195;
docs/papers.md §6).

Per parameter, with t the step number and beta2_t = 1 - t^(-0.8):
- a matrix keeps only row and column EMAs of g^2 + 1e-30 (Adafactor's factorisation); the second
  moment is v = (r / mean(r)) outer c, so its state is O(rows + cols), not O(rows x cols);
- a vector keeps a full EMA of g^2 + 1e-30;
- update u = g / sqrt(v), then grouped update normalisation u /= max(1, RMS(u) / 1.0);
- step theta -= lr * max(1e-3, RMS(theta)) * u, with decoupled weight decay scaled the same way.
There is no first moment.

Fused mode (`attach`): the update runs inside backward from a hook on each parameter as soon as
its gradient is accumulated, and the gradient is freed at once, so the full set of gradients never
exists (LOMO's memory saving). Global grad-norm clipping would need every gradient first (a second
backward), so gradients are clipped by value instead. `step()` applies the same update to
gradients already held, for gradient accumulation or when an outer wrapper owns the gradients.
"""

from __future__ import annotations

import math

import torch

EPS_SQ = 1e-30  # added to g^2
EPS_SCALE = 1e-3  # floor of the relative step size
DECAY_RATE = -0.8  # beta2_t = 1 - t^DECAY_RATE
CLIP_THRESHOLD = 1.0  # grouped update normalisation


class AdaLomo(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0, clip_value: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, clip_value=clip_value))
        self._hooks: list = []
        self._fused_active = False
        self._fused_t = 0

    # -- the update for one parameter, shared by both modes
    @torch.no_grad()
    def update_param(self, p: torch.Tensor, grad: torch.Tensor, group: dict, t: int) -> None:
        g = grad.float()
        if group["clip_value"] > 0:
            g = g.clamp(-group["clip_value"], group["clip_value"])
        beta2 = 1.0 - math.pow(t, DECAY_RATE)
        sq = g * g + EPS_SQ
        state = self.state[p]
        if g.dim() >= 2:
            if "row" not in state:
                state["row"] = torch.zeros(g.shape[:-1], dtype=torch.float32, device=g.device)
                state["col"] = torch.zeros(g.shape[:-2] + g.shape[-1:], dtype=torch.float32, device=g.device)
            state["row"].mul_(beta2).add_(sq.mean(dim=-1), alpha=1 - beta2)
            state["col"].mul_(beta2).add_(sq.mean(dim=-2), alpha=1 - beta2)
            r = state["row"] / state["row"].mean(dim=-1, keepdim=True)
            u = g * r.rsqrt().unsqueeze(-1) * state["col"].rsqrt().unsqueeze(-2)
        else:
            if "sq" not in state:
                state["sq"] = torch.zeros_like(g)
            state["sq"].mul_(beta2).add_(sq, alpha=1 - beta2)
            u = g * state["sq"].rsqrt()
        u.div_((rms(u) / CLIP_THRESHOLD).clamp(min=1.0))
        theta = p.float()
        lr = group["lr"] * max(EPS_SCALE, float(rms(theta)))
        if group["weight_decay"] > 0:
            theta.mul_(1 - lr * group["weight_decay"])
        theta.add_(u, alpha=-lr)
        p.copy_(theta)

    def _step_number(self) -> int:
        # One counter for the whole optimizer, kept in param_groups so checkpoints carry it.
        return self.param_groups[0].setdefault("step", 0)

    @torch.no_grad()
    def step(self, closure=None):
        t = self._step_number() + 1
        for group in self.param_groups:
            group["step"] = t
            for p in group["params"]:
                if p.grad is not None:
                    self.update_param(p, p.grad, group, t)
        return None

    # -- fused mode
    def attach(self) -> None:
        """Update each parameter from a hook as soon as its gradient is ready, then free it."""
        for group in self.param_groups:
            for p in group["params"]:
                self._hooks.append(p.register_post_accumulate_grad_hook(self._make_hook(group)))

    def _make_hook(self, group):
        def hook(p: torch.Tensor) -> None:
            if not self._fused_active:
                return
            self.update_param(p, p.grad, group, self._fused_t)
            p.grad = None

        return hook

    def begin_fused_step(self) -> None:
        """Call before the backward pass that should update the parameters."""
        self._fused_t = self._step_number() + 1
        self._fused_active = True

    def end_fused_step(self) -> None:
        for group in self.param_groups:
            group["step"] = self._fused_t
        self._fused_active = False

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()


def rms(x: torch.Tensor) -> torch.Tensor:
    return x.norm(2) / math.sqrt(x.numel())
