"""Online RLHF's reward-model side: pairs from the current policy, rounds, and the fast path.

Paper: InternLM2 report, arXiv 2403.17297, section 4.2 (COOL RLHF's Online RLHF); docs/papers.md §7.
InternLM2 runs RLHF in rounds: after each, fresh preference pairs from the current policy are
labelled and the reward model is updated on them, then the policy continues ("slow path"). When
reward hacking shows, the pairs that expose it are collected and the reward model is patched at
once ("fast path"). Here the checkers stand in for the human labellers:

- `PairCollector` keeps, from every RL step's groups, pairs (an answer the checker accepts > one
  it rejects) and marks as *offending* those the reward model ranked the wrong way round.
- `HackingDetector` watches the step's mean reward, checker accuracy and answer length: reward up
  while accuracy falls over the last `window` steps (compared with the window before, each change
  beyond `z` standard errors), or length beyond `length_ratio` x the first window's, is hacking.
  It also watches held-out greedy accuracy each time it is measured: below its best so far by more
  than `z` standard errors (a two-proportion test over the held-out prompts) while the reward is
  above what it was then. At small batches the per-step rollout figures are too noisy to show a
  slow drift, while held-out accuracy falls earlier and is measured on more prompts.
- `patch_reward_models` trains every reward model of the ensemble on the collected pairs for a
  few steps (the same trainer and COOL loss as `lmforge rm`) and returns the updated models.

`lmforge.align.rl` calls them: a round ends every `steps / rounds` steps with all of the round's
pairs; the fast path ends one early with the offending pairs. The detector only watches steps
that move the policy, and after a patch PPO's critic learns the new reward scale alone again for
`critic_warmup` steps before the policy moves (COOL starts each round's critic from its reward model).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import torch

from lmforge.align.conversations import Pair


class PairCollector:
    """Checker-labelled (accepted > rejected) pairs from the policy's own answers."""

    def __init__(self, cap: int = 4096):
        self.pairs: list[Pair] = []
        self.offending: list[Pair] = []
        self.cap = cap

    def add(self, examples, answers: list[str], verdicts: torch.Tensor, rewards: torch.Tensor, group: int,
            domain_of) -> None:
        """One step's groups: for each prompt, its best-rewarded accepted answer against each rejected one."""
        for j, ex in enumerate(examples):
            idx = range(j * group, (j + 1) * group)
            good = [i for i in idx if verdicts[i] == 1]
            bad = [i for i in idx if verdicts[i] != 1]
            if not good or not bad:
                continue
            best = max(good, key=lambda i: float(rewards[i]))
            prompt = [{"role": "user", "content": ex.prompt}]
            for i in bad:
                if answers[i] == answers[best]:
                    continue
                pair = Pair(prompt, answers[best], answers[i], domain_of(ex))
                self.pairs.append(pair)
                if float(rewards[i]) >= float(rewards[best]):  # the reward model prefers the wrong answer
                    self.offending.append(pair)
        del self.pairs[:-self.cap]
        del self.offending[:-self.cap]

    def take(self, offending_first: bool = False) -> list[Pair]:
        """The collected pairs (with `offending_first`, only the offending ones when there are any),
        and a fresh start."""
        out = list(self.offending if offending_first and self.offending else self.pairs)
        self.pairs, self.offending = [], []
        return out


@dataclasses.dataclass
class HackingDetector:
    """Reward up while checker accuracy falls, or answers growing, over sliding windows of steps.

    A window of `window` steps is compared with the one before it by Welch's t statistic of the
    per-step means: hacking is reward up by more than `z` standard errors while accuracy falls by
    more than `z` (so the noise of a small batch does not fire it), or a mean answer length beyond
    `length_ratio` x the first window's."""

    window: int = 10
    z: float = 2.0
    length_ratio: float = 2.0
    history: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    best: tuple[float, float | None] | None = None  # (held-out accuracy, the reward then) at its best

    def update(self, reward: float, accuracy: float, length: float) -> str | None:
        """Record a step; the reason when the last window looks like hacking, else None."""
        self.history.append((reward, accuracy, length))
        w = self.window
        if len(self.history) < 2 * w:
            return None
        before, now = self.history[-2 * w:-w], self.history[-w:]
        mean = lambda rows, k: statistics.fmean(r[k] for r in rows)  # noqa: E731

        def t(k: int) -> float:
            se = math.sqrt((statistics.variance(r[k] for r in now) + statistics.variance(r[k] for r in before)) / w)
            return (mean(now, k) - mean(before, k)) / max(se, 1e-9)

        if t(0) > self.z and t(1) < -self.z:
            return (f"reward {mean(before, 0):.3f} -> {mean(now, 0):.3f} while checker accuracy "
                    f"{mean(before, 1):.3f} -> {mean(now, 1):.3f}")
        first = mean(self.history[:w], 2)
        if first > 0 and mean(now, 2) > self.length_ratio * first:
            return f"answer length {first:.1f} -> {mean(now, 2):.1f} tokens"
        return None

    def held_out(self, accuracy: float, n: int) -> str | None:
        """Record a held-out greedy accuracy over `n` prompts (the reward is the last window's mean; none
        before the first step); the reason when it fell significantly below its best while the reward
        rose, else None."""
        recent = self.history[-self.window:]
        reward = statistics.fmean(r[0] for r in recent) if recent else None
        if self.best is None or accuracy >= self.best[0]:
            self.best = (accuracy, reward)
            return None
        (top, reward_then), pooled = self.best, (self.best[0] + accuracy) / 2
        z = (top - accuracy) / math.sqrt(max(pooled * (1 - pooled), 1e-12) * 2 / n)
        if z > self.z and reward is not None and (reward_then is None or reward > reward_then):
            since = "since the start" if reward_then is None else f"{reward_then:.3f} -> {reward:.3f}"
            return (f"held-out accuracy {top:.3f} -> {accuracy:.3f} ({z:.1f} standard errors over {n} prompts) "
                    f"while the reward rose ({since})")
        return None

    def reset(self) -> None:
        self.history.clear()
        self.best = None


def patch_reward_models(members: list, pairs: list[Pair], tok, rl_cfg, out_dir: Path, console, info) -> list:
    """Each reward model trained on `pairs` for `rl_cfg.patch_steps` steps (COOL loss, lr `patch_lr`)."""
    from lmforge.align.config import RMSection
    from lmforge.align.losses import RewardLoss
    from lmforge.align.rm import encode_pairs, train_reward_model

    rm_cfg = RMSection(init_from=rl_cfg.init_from, steps=rl_cfg.patch_steps, lr=rl_cfg.patch_lr,
                       global_batch=min(16, max(1, len(pairs))), micro_batch=min(16, max(1, len(pairs))),
                       seq_len=rl_cfg.patch_seq_len, loss="cool" if rl_cfg.conditioned else "bt", seed=rl_cfg.seed,
                       tensorboard=False, log_every=max(1, rl_cfg.patch_steps))
    encoded, _ = encode_pairs(tok, pairs, rm_cfg)
    if not encoded:
        return members
    loss = RewardLoss(rm_cfg.loss, rm_cfg.focal_gamma, rm_cfg.barrier, rm_cfg.barrier_bound)
    return [train_reward_model(rm_cfg, m, encoded, loss, out_dir / f"member-{k}", seed=rl_cfg.seed + k,
                               pad=tok.pad_id or 0, resume=False, console=console, info=info,
                               name=f"rm patch, member {k}")
            for k, m in enumerate(members)]
