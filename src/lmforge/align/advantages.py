"""Advantages for policy-gradient RL on groups of answers to the same prompt, and GAE for a critic.

- GRPO (Shao et al., arXiv 2402.03300, section 4.1.2): A_i = (r_i - mean(r)) / (std(r) + eps) over
  the G answers of a prompt (TRL's `scale_rewards="group"`; std with Bessel's correction, as
  `torch.std`); `scale = False` keeps only the mean baseline (Dr. GRPO, arXiv 2503.20783).
- RLOO (Ahmadian et al., arXiv 2402.14740): A_i = r_i - mean of the other G - 1 rewards.
- GAE (Schulman et al., arXiv 1506.02438): delta_t = r_t + gamma V_{t+1} - V_t,
  A_t = sum_l (gamma lambda)^l delta_{t+l}, returns A_t + V_t; what PPO with a critic uses.
"""

from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, group: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(N,) advantages for N = prompts x group rewards laid out prompt by prompt."""
    r = rewards.float().view(-1, group)
    a = r - r.mean(1, keepdim=True)
    if scale:
        a = a / (r.std(1, keepdim=True) + eps)
    return a.reshape(-1)


def rloo_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """(N,) leave-one-out advantages; needs group >= 2."""
    if group < 2:
        raise ValueError("RLOO needs at least two answers per prompt (group >= 2)")
    r = rewards.float().view(-1, group)
    baseline = (r.sum(1, keepdim=True) - r) / (group - 1)
    return (r - baseline).reshape(-1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), each (B, T), for per-token rewards and values over the masked (response)
    positions of each row; positions outside the mask get 0 and do not bootstrap."""
    rewards, values, m = rewards.float(), values.float(), mask.float()
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] * m[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last * (m[:, t + 1] if t + 1 < T else 0)) * m[:, t]
        adv[:, t] = last
    return adv, (adv + values) * m
