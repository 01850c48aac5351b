"""The alignment losses, as trainer losses (`lmforge.train.losses.LossFn`: they count pairs and return
their batch's share of the global mean). Sequences come in pairs: sequence 2i is the chosen answer,
2i+1 the rejected one, to the same prompt (rows for DPO; reward tokens, `Batch.seq_ends`, for reward
models, whose sequences may be packed several to a row).

- `RewardLoss("bt")`: Bradley-Terry, -log sigmoid(r_chosen - r_rejected) (Ouyang et al. 2022).
- `RewardLoss("cool")`: InternLM2's conditional reward model loss (arXiv 2403.17297, section 4.2;
  docs/papers.md §7). P = sigmoid(r_c - r_r); the ranking loss is decayed on easy pairs,
  L_rank = -(1 - 2 max(0, P - 0.5))^gamma log P (gamma = 2), and a logarithmic barrier keeps each
  score inside (-5, 5): L_penalty = -(log(r + 5) + log(5 - r)); L = L_rank + 0.02 L_penalty, the
  penalty summed over the pair's two scores. Scores are clamped 1e-3 inside the bound in the
  barrier's logarithm, so a score that jumps past it gives a large finite loss, not NaN.
- `PreferenceLoss("dpo")`: DPO (Rafailov et al., arXiv 2305.18290, eq. 7), -log sigmoid(beta *
  ((log pi(y_c) - log ref(y_c)) - (log pi(y_r) - log ref(y_r)))), with the reference log-probs
  computed once before training (TRL's `precompute_ref_log_probs`).
- `PreferenceLoss("simpo")`: SimPO (Meng et al., arXiv 2405.14734, eq. 6), reference-free:
  -log sigmoid(beta * (mean log pi(y_c) - mean log pi(y_r)) - gamma), means over answer tokens.
- `MPOLoss`: InternVL's Mixed Preference Optimization (MPO, arXiv 2411.10442, section 3.2; InternVL3,
  arXiv 2504.10479, section 2.4; docs/papers.md §10): w_p L_DPO + w_q L_BCO + w_g L_gen with weights
  0.8, 0.2 and 1.0. L_BCO = -log sigmoid(beta log(pi/ref)(y_c) - delta) - log sigmoid(-(beta
  log(pi/ref)(y_r) - delta)), each answer judged on its own; delta, the reward shift, is the running
  mean of the rewards seen so far when `bco_shift` is on (BCO, arXiv 2404.04656), 0 otherwise (TRL's
  "bco_pair"). L_gen is the next-token loss of the chosen answers (mean over their tokens).

- `PolicyLoss`: the clipped policy-gradient surrogate of PPO / GRPO (Schulman et al., arXiv
  1707.06347; Shao et al., arXiv 2402.03300), per token: -min(rho A, clip(rho, 1 - eps, 1 + eps) A)
  with rho = pi / pi_old, plus beta times the k3 estimate of KL(pi || ref), exp(ref - logp) -
  (ref - logp) - 1 (Schulman's "Approximating KL divergence"), by default times the ratio rho so that
  its gradient is the unbiased reverse-KL gradient (DeepSeek-V3.2, arXiv 2512.02556), as TRL's
  GRPOTrainer computes them.
  `aggregate = "token"` averages over every completion token of the global batch (TRL's "bnpo",
  DAPO's token-level mean); "sequence" averages each answer's tokens, then the answers (TRL's "grpo").
- `PretrainMix`: COOL RLHF keeps a pre-training loss in the policy's update (InternLM2 section 4.2,
  "PTX loss weight 0.5"; InstructGPT's PPO-ptx, arXiv 2203.02155 eq. 2): the policy loss plus
  `coef` x the next-token loss on pre-training rows trained in the same step. A batch without
  the RL fields (advantages, old log-probs) is a pre-training row; its loss is the mean over the
  step's pre-training tokens (`ptx_tokens`, set each step), the policy's over its own count.

The sequence log-probabilities sum the answer tokens (the batch's loss mask) through
`target_logprobs`, inside the model's forward (FSDP has the LM head gathered there). Under sequence
parallelism (rows split over head x context ranks) DPO's and SimPO's sums, and SimPO's token counts,
are added over the ranks by the model's `row_sums` (`lmforge.train.seqpar.rowsums`), so they are
exact; the reference log-probs are computed the same way (`lmforge.align.dpo.reference_table`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmforge.model.logprobs import target_logprobs
from lmforge.train.batch import Batch
from lmforge.train.losses import NextTokenLoss


def cool_loss(chosen: torch.Tensor, rejected: torch.Tensor, gamma: float = 2.0, barrier: float = 0.02,
              bound: float = 5.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, ranking, penalty) per pair for rewards (P,) of chosen and rejected answers."""
    p = torch.sigmoid(chosen - rejected)
    rank = -(1 - 2 * (p - 0.5).clamp(min=0)) ** gamma * F.logsigmoid(chosen - rejected)
    penalty = sum(-(torch.log((r + bound).clamp(min=1e-3)) + torch.log((bound - r).clamp(min=1e-3)))
                  for r in (chosen, rejected))
    return rank + barrier * penalty, rank, penalty


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry per pair."""
    return -F.logsigmoid(chosen - rejected)


def _pairs(batch: Batch) -> int:
    n = batch.seq_ends.numel() if batch.seq_ends is not None else batch.input_ids.shape[0]
    if n % 2:
        raise ValueError("a preference batch needs an even number of sequences (chosen, rejected, chosen, ...)")
    return n // 2


@dataclass
class RewardLoss:
    kind: str = "cool"  # "bt" or "cool"
    gamma: float = 2.0
    barrier: float = 0.02
    bound: float = 5.0
    log_key: str = "rm"

    def count(self, batch: Batch) -> int:
        return _pairs(batch)

    def __call__(self, model, batch: Batch, divisor: float):
        def on_rewards(r: torch.Tensor):
            chosen, rejected = r[0::2], r[1::2]
            parts = {"acc": (chosen > rejected).float().sum().detach() / divisor,
                     "margin": (chosen - rejected).sum().detach() / divisor}
            if self.kind == "bt":
                per_pair = bt_loss(chosen, rejected)
            else:
                per_pair, rank, penalty = cool_loss(chosen, rejected, self.gamma, self.barrier, self.bound)
                parts.update(rank=rank.sum().detach() / divisor, penalty=penalty.sum().detach() / divisor)
            loss = per_pair.sum() / divisor
            return loss, {self.log_key: loss.detach(), **parts}

        # seq_ends: positions in the whole rows, also when this batch is a sequence-parallel shard of
        # them (every rank then computes every pair; the pairs are counted on every rank, so each
        # rank's loss is 1/P of the pair loss and FSDP2's sum over the ranks gives the whole gradient)
        return model(batch.input_ids, seq_ends=batch.seq_ends, document_ids=batch.document_ids, loss_fn=on_rewards)


def sequence_logps(hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor,
                   mask: torch.Tensor, row_sums=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log P(target) over the masked tokens of each row, number of them), each (B,).
    `row_sums` (sums (B, k) over the tokens given, hidden, head weight) -> sums (B, k) over the whole
    rows: the model's `row_sums` when its rows are sequence-parallel shards
    (`lmforge.train.seqpar.rowsums`); None when the tokens given are the whole rows."""
    rows = mask.nonzero()[:, 0]
    logp, _ = target_logprobs(hidden[mask], head_weight, targets[mask])
    total = torch.zeros(mask.shape[0], dtype=torch.float32, device=hidden.device).index_add(0, rows, logp)
    if row_sums is None:
        return total, mask.sum(1)
    whole = row_sums(torch.stack([total, mask.sum(1).float()], 1), hidden, head_weight)
    return whole[:, 0], whole[:, 1].round().long()


def model_row_sums(model):
    """The per-row sums over the processes that share the model's rows, set on it from outside by
    `lmforge.train.seqpar.apply_sequence_parallel`; None for a model that is given whole rows."""
    return getattr(model, "row_sums", None)


@torch.no_grad()
def reference_logps(model, batch: Batch) -> torch.Tensor:
    """log P(answer) per row under `model` (the frozen reference), (B,) fp32; under sequence
    parallelism `batch` is this rank's shard and every rank gets the whole rows' sums."""
    out = model(batch.input_ids, document_ids=batch.document_ids, **batch.model_inputs(),
                loss_fn=lambda h, w: sequence_logps(h, w, batch.targets, batch.loss_mask, model_row_sums(model))[0])
    return out.float().cpu()


@dataclass
class PreferenceLoss:
    kind: str = "dpo"  # "dpo" or "simpo"
    beta: float = 0.1
    gamma: float = 0.5  # SimPO's margin
    log_key: str = "pref"

    def count(self, batch: Batch) -> int:
        return _pairs(batch)

    def __call__(self, model, batch: Batch, divisor: float):
        def head_loss(hidden: torch.Tensor, weight: torch.Tensor):
            # under sequence parallelism, the whole rows' sums on every rank (counted there too: each
            # rank's loss is 1/P of the pair loss and the sum over the ranks gives the whole gradient)
            logps, n = sequence_logps(hidden, weight, batch.targets, batch.loss_mask, model_row_sums(model))
            if self.kind == "dpo":
                if batch.ref_logps is None:
                    raise ValueError("DPO needs the reference log-probs (Batch.ref_logps)")
                ratio = logps - batch.ref_logps.to(logps)
                margin = self.beta * (ratio[0::2] - ratio[1::2])
            else:
                avg = logps / n.clamp(min=1)
                margin = self.beta * (avg[0::2] - avg[1::2]) - self.gamma
            loss = -F.logsigmoid(margin).sum() / divisor
            return loss, {self.log_key: loss.detach(), "acc": (margin > 0).float().sum().detach() / divisor,
                          "margin": margin.sum().detach() / divisor}

        return model(batch.input_ids, document_ids=batch.document_ids, loss_fn=head_loss, **batch.model_inputs())


@dataclass
class MPOLoss:
    beta: float = 0.1
    w_pref: float = 0.8
    w_quality: float = 0.2
    w_gen: float = 1.0
    bco_shift: bool = True
    log_key: str = "mpo"
    delta: float = 0.0  # the running mean of the rewards (updated by training forwards only)
    seen: int = 0

    def count(self, batch: Batch) -> int:
        return _pairs(batch)

    def __call__(self, model, batch: Batch, divisor: float):
        if batch.ref_logps is None:
            raise ValueError("MPO needs the reference log-probs (Batch.ref_logps)")

        def head_loss(hidden: torch.Tensor, weight: torch.Tensor):
            logps, n = sequence_logps(hidden, weight, batch.targets, batch.loss_mask)
            rewards = self.beta * (logps - batch.ref_logps.to(logps))
            chosen, rejected = rewards[0::2], rewards[1::2]
            delta = self.delta if self.bco_shift else 0.0
            pref = -F.logsigmoid(chosen - rejected)
            quality = -F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta))
            gen = -logps[0::2].sum() / n[0::2].sum().clamp(min=1)  # this batch's chosen tokens
            pairs = chosen.numel()
            loss = (self.w_pref * pref.sum() + self.w_quality * quality.sum() + self.w_gen * gen * pairs) / divisor
            if self.bco_shift and torch.is_grad_enabled():
                total = self.delta * self.seen + float(rewards.detach().sum())
                self.seen += rewards.numel()
                self.delta = total / self.seen
            return loss, {self.log_key: loss.detach(), "dpo": pref.sum().detach() / divisor,
                          "bco": quality.sum().detach() / divisor, "gen": gen.detach() * pairs / divisor,
                          "acc": (chosen > rejected).float().sum().detach() / divisor}

        return model(batch.input_ids, document_ids=batch.document_ids, loss_fn=head_loss, **batch.model_inputs())

    def state_dict(self) -> dict:
        """The running reward shift, saved with each checkpoint so that a resumed run goes on with it."""
        return {"delta": self.delta, "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.delta, self.seen = float(state["delta"]), int(state["seen"])


@dataclass
class PolicyLoss:
    clip: float = 0.2
    beta: float = 0.0  # KL coefficient against the reference (0: no reference needed)
    aggregate: str = "token"  # "token" or "sequence"
    kl_weighted: bool = True  # KL times the ratio pi / pi_old (DeepSeek-V3.2; TRL's `use_bias_correction_kl`)
    log_key: str = "pg"

    def count(self, batch: Batch) -> int:
        if self.aggregate == "token":
            return int(batch.loss_mask.sum())
        return int(batch.loss_mask.any(1).sum())

    def __call__(self, model, batch: Batch, divisor: float):
        def head_loss(hidden: torch.Tensor, weight: torch.Tensor):
            mask = batch.loss_mask
            rows = mask.nonzero()[:, 0]
            logp, _ = target_logprobs(hidden[mask], weight, batch.targets[mask])
            # no old_logps: the batch was sampled by the very weights being updated (one optimizer step
            # per rollout), so pi_old = pi, detached: ratio 1, the gradient of the plain policy gradient
            old = logp.detach() if batch.old_logps is None else batch.old_logps[mask].to(logp)
            ratio = torch.exp(logp - old)
            adv = batch.advantages.to(logp)
            adv = adv[mask] if adv.dim() == 2 else adv[rows]  # per token (PPO's GAE) or per answer
            per_token = -torch.minimum(ratio * adv, ratio.clamp(1 - self.clip, 1 + self.clip) * adv)
            parts = {"clipfrac": ((ratio - 1).abs() > self.clip).float().sum().detach()}
            if self.beta:
                delta = batch.ref_logps[mask].to(logp) - logp
                kl = torch.exp(delta) - delta - 1
                if self.kl_weighted:  # the importance ratio makes the KL gradient unbiased off-policy
                    kl = kl * ratio
                per_token = per_token + self.beta * kl
                parts["kl"] = kl.sum().detach()
            if self.aggregate == "token":
                loss = per_token.sum() / divisor
                parts = {k: v / divisor for k, v in parts.items()}
            else:
                n = mask.sum(1).clamp(min=1).to(logp)
                per_row = torch.zeros(mask.shape[0], dtype=logp.dtype, device=logp.device).index_add(0, rows, per_token)
                loss = (per_row / n).sum() / divisor
                parts = {k: v / max(int(mask.sum()), 1) for k, v in parts.items()}
            return loss, {self.log_key: loss.detach(), **parts}

        return model(batch.input_ids, document_ids=batch.document_ids, loss_fn=head_loss)


@torch.no_grad()
def token_logps(model, batch: Batch) -> torch.Tensor:
    """log P(target) at every position of the batch's rows (B, L), fp32 (0 where the mask is off)."""
    def head(hidden: torch.Tensor, weight: torch.Tensor):
        out = torch.zeros(batch.targets.shape, dtype=torch.float32, device=hidden.device)
        out[batch.loss_mask] = target_logprobs(hidden[batch.loss_mask], weight, batch.targets[batch.loss_mask])[0]
        return out

    return model(batch.input_ids, document_ids=batch.document_ids, loss_fn=head).cpu()


@dataclass
class ValueLoss:
    """PPO's critic loss: 0.5 (V(s_t) - R_t)^2 over the completion tokens, no value clipping (COOL RLHF's
    setting; InternLM2 report section 4.2). The critic is a `RewardModel` read at every completion
    position; `Batch.rewards` (B, L) holds the returns."""

    log_key: str = "vf"

    def count(self, batch: Batch) -> int:
        return int(batch.loss_mask.sum())

    def __call__(self, model, batch: Batch, divisor: float):
        mask = batch.loss_mask
        ends = masked_positions(mask).to(batch.input_ids.device)

        def on_values(v: torch.Tensor):
            err = v - batch.rewards.to(v)[mask]
            loss = 0.5 * (err ** 2).sum() / divisor
            return loss, {self.log_key: loss.detach()}

        return model(batch.input_ids, ends=ends, document_ids=batch.document_ids, loss_fn=on_values)


def masked_positions(mask: torch.Tensor) -> torch.Tensor:
    """The flat positions (row * L + column) of a (B, L) mask's True entries, in row-major order: where
    a critic reads V(s_t), the state before target t being input position t (the token that predicts it)."""
    return mask.reshape(-1).nonzero()[:, 0]


@torch.no_grad()
def token_values(critic, batch: Batch) -> torch.Tensor:
    """V at every masked position of the batch (B, L), fp32 (0 elsewhere)."""
    mask = batch.loss_mask
    out = torch.zeros(mask.shape, dtype=torch.float32)
    if mask.any():
        out[mask] = critic(batch.input_ids, ends=masked_positions(mask), document_ids=batch.document_ids).float().cpu()
    return out


@dataclass
class PretrainMix:
    """`policy` plus `coef` x the next-token loss of the step's pre-training rows (COOL's PTX)."""

    policy: object  # a LossFn over the RL rows
    coef: float
    ptx_tokens: int = 1  # target tokens of the step's pre-training rows (the normaliser of their loss)

    @property
    def log_key(self) -> str:
        return self.policy.log_key

    @staticmethod
    def is_pretrain(batch: Batch) -> bool:
        return batch.advantages is None and batch.old_logps is None

    def count(self, batch: Batch) -> int:
        return 0 if self.is_pretrain(batch) else self.policy.count(batch)

    def __call__(self, model: torch.nn.Module, batch: Batch, divisor: float
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self.is_pretrain(batch):
            return self.policy(model, batch, divisor)
        loss, parts = NextTokenLoss()(model, batch, float(max(self.ptx_tokens, 1)))
        return self.coef * loss, {"ptx": parts["ce"]}
