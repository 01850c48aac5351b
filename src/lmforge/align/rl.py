"""Online RL with verifiable rewards: `lmforge rl` and the `rl` stage of `lmforge run` (GRPO, Shao et
al., arXiv 2402.03300; RLOO, Ahmadian et al., arXiv 2402.14740; InternLM2 report section 4.2 for
the online setting; docs/papers.md §7).

Each step:
1. `global_batch` prompts of the built-in tasks (their "rl" split, which SFT and the reward models
   never see: lmforge.align.tasks) are answered `group` times by the inference engine,
   which decodes with the trainer's own module (rollout and training colocated in one process), or,
   with `rollout_workers = N`, by N Ray actors with copies of the policy (lmforge.align.rollout_workers).
   With `dynamic_sampling` (DAPO, arXiv 2503.14476 section 3.2), groups whose answers all got one
   reward are dropped and more prompts answered until `global_batch` groups differ (`draw_groups`).
2. Each answer's reward is its checker's verdict (1 correct, 0 wrong, `malformed_reward` malformed);
   or, with `reward = "rm"`, the score of the reward model(s) `lmforge rm` trained (an ensemble
   combined by its rule); or, with `reward = "polar"`, a POLAR model's score against the task's
   reference answer. The checkers measure accuracy whatever the reward (per task too), so a reward
   model being gamed shows as reward up, accuracy down.
3. GRPO / RLOO: group baselines give advantages (GRPO standardised within the group, RLOO leave one
   out); the log-probs of the sampling policy (and of the frozen starting policy, for the KL term)
   are computed; one optimizer step on the clipped surrogate (`PolicyLoss`).
   PPO (`algorithm = "ppo"`, COOL RLHF's settings): a critic (from the reward model) gives values,
   the KL to the starting policy enters the per-token reward, GAE gives per-token advantages and
   returns; the critic is trained on the returns, alone for its first `critic_warmup` steps, then
   the policy with the clipped surrogate (no advantage normalisation, no value clipping), plus
   `ptx` x the next-token loss on rows of pre-training data in the same update (`PretrainMix`).
   RFT (`algorithm = "rft"`, rejection sampling): the next-token loss on each group's best answer,
   when it beats the group's mean and reaches `rft_min_reward` (checker rewards: correct answers
   only; with POLAR rewards, POLAR's reinforcement fine-tuning).
4. The engine is told the weights changed (colocated), or the workers are sent the new weights.
5. Online RLHF (reward models only; `lmforge.align.online`): the step's answers give checker-labelled
   pairs; every `steps / rounds` steps, or at once when the hacking detector fires (the fast path,
   on the pairs the reward models ranked wrong), the reward models are trained on them.

Held-out greedy accuracy is measured every `eval_every` steps, so reward and accuracy are seen side
by side (reward up while accuracy falls is reward hacking). With `tasks` a subset, every built-in
task's held-out accuracy is also measured before and after, so what the subset's training does to
the others is seen.

    out_dir/metrics.jsonl (reward, accuracy, KL, length, rollout, train and sync seconds), checkpoints/,
    model/ (HF InternLM2 + tokenizer), rl.json (summary), curves.png (reward and accuracy)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from lmforge.align.advantages import grpo_advantages, rloo_advantages
from lmforge.align.config import RLSection
from lmforge.align.loop import setup
from lmforge.align.losses import PolicyLoss, PretrainMix, ValueLoss, token_logps, token_values
from lmforge.align.online import HackingDetector, PairCollector, patch_reward_models
from lmforge.align.preferences import domain_of
from lmforge.align.pair_rows import lm_batch
from lmforge.align.rollout_workers import rollout_engine
from lmforge.align.tasks import check, make_examples, similarity
from lmforge.atomic import write_json
from lmforge.significance import describe, paired_by_task
from lmforge.train.batch import Batch
from lmforge.train.metrics import MetricsLogger
from lmforge.train.schedule import lr_at
from lmforge.train.losses import NextTokenLoss
from lmforge.train.trainer import StepCheckpoints, StepStats, Trainer


REWARD_FROM = {"checker": "the checkers", "rm": "the reward model(s)", "polar": "POLAR against the references"}


def task_accuracy_parts(examples, verdicts: torch.Tensor, group: int) -> dict[str, float]:
    """The rollouts' accuracy per task ("acc_<task>"), the checkers' verdicts whatever the reward was."""
    out: dict[str, list[float]] = {}
    for i, v in enumerate(verdicts.tolist()):
        out.setdefault(f"acc_{examples[i // group].task}", []).append(float(v == 1))
    return {k: sum(v) / len(v) for k, v in out.items()}


def checker_rewards(examples, answers: list[str], group: int, malformed: float, partial: float = 0.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(verdicts, rewards) of answer i to example i // group, each answer checked once. Verdicts: 1
    correct, 0 wrong, `malformed` malformed. Rewards: the verdicts, or with `partial` > 0 a wrong
    answer gets that times its similarity to the reference (lmforge.align.tasks.similarity)."""
    value = {"correct": 1.0, "wrong": 0.0, "malformed": malformed}
    judged = [check(examples[i // group], a) for i, a in enumerate(answers)]
    verdicts = torch.tensor([value[v] for v in judged])
    if not partial:
        return verdicts, verdicts
    rewards = [partial * similarity(examples[i // group], a) if v == "wrong" else value[v]
               for i, (a, v) in enumerate(zip(answers, judged))]
    return verdicts, torch.tensor(rewards)


class RMRewards:
    """Rewards from one or more reward models (an ensemble combined by `combine`)."""

    def __init__(self, cfg: RLSection, tokenizer):
        from lmforge.align.reward import load_reward_model

        self.members = [load_reward_model(d) for d in cfg.reward_models]
        self.cfg, self.tokenizer = cfg, tokenizer

    def __call__(self, examples, answers: list[str], group: int) -> torch.Tensor:
        from lmforge.align.ensemble import combine, standardise
        from lmforge.align.preferences import conditioned, domain_of, plain
        from lmforge.align.reward import score

        render = conditioned if self.cfg.conditioned else plain
        convs = [render([{"role": "user", "content": examples[i // group].prompt}], a, domain_of(examples[i // group]))
                 for i, a in enumerate(answers)]
        scores = torch.stack([score(rm, self.tokenizer, convs) for rm in self.members])
        if len(self.members) == 1:
            return scores[0]
        return combine(standardise(scores), self.cfg.combine, self.cfg.uncertainty)


class PolarRewards:
    """POLAR rewards: each answer scored against the task's reference answer (lmforge.align.polar)."""

    def __init__(self, cfg: RLSection, tokenizer):
        from lmforge.align.reward import load_reward_model

        self.rm, self.tokenizer = load_reward_model(cfg.polar_model), tokenizer

    def __call__(self, examples, answers: list[str], group: int) -> torch.Tensor:
        from lmforge.align.polar import polar_score

        return torch.cat([polar_score(self.rm, self.tokenizer, [{"role": "user", "content": examples[j].prompt}],
                                      examples[j].answer, answers[j * group:(j + 1) * group])
                          for j in range(len(answers) // group)])


def best_of_groups(rewards: torch.Tensor, group: int, min_reward: float | None = None) -> list[int]:
    """The index of each group's best answer, for the groups whose best beats the group's mean (and
    reaches `min_reward`)."""
    r = rewards.view(-1, group)
    best = r.argmax(1)
    keep = r.max(1).values > r.mean(1)
    if min_reward is not None:
        keep &= r.max(1).values >= min_reward
    return [int(j * group + best[j]) for j in range(r.shape[0]) if keep[j]]


def varied_groups(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """(prompts,) bool: the groups whose answers did not all get the same reward, the ones a group
    baseline gives a non-zero advantage (DAPO's dynamic sampling keeps these)."""
    r = rewards.view(-1, group)
    return (r != r[:, :1]).any(1)


def draw_groups(cfg: RLSection, rollouts, tok, train, order, cursor: int, system, score) -> tuple:
    """One step's answered prompts: `global_batch` prompts from `order` at `cursor`, each answered
    `group` times; with `dynamic_sampling`, more batches (at most `max_sample_batches`) until
    `global_batch` of the groups have unequal rewards. `score(examples, rolls)` gives (verdicts,
    rewards). Returns (examples, rollouts, verdicts, rewards, kept group indices, the next cursor);
    every group is kept without dynamic sampling, else the first `global_batch` varied ones."""
    examples, rolls, verdicts, rewards, varied = [], [], [], [], []
    for _ in range(cfg.max_sample_batches if cfg.dynamic_sampling else 1):
        batch = [train[int(order[(cursor + i) % len(order)])] for i in range(cfg.global_batch)]
        prompt_ids = [tok.encode_chat(ex.messages(system)[:-1], add_generation_prompt=True) for ex in batch]
        got = rollouts.generate(prompt_ids, cfg.group, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                seed=cfg.seed * 1_000_003 + cursor * cfg.group)
        cursor += cfg.global_batch
        v, r = score(batch, got)
        varied += [len(examples) + j for j in varied_groups(r, cfg.group).nonzero().flatten().tolist()]
        examples += batch
        rolls += got
        verdicts.append(v)
        rewards.append(r)
        if len(varied) >= cfg.global_batch:
            break
    keep = varied[:cfg.global_batch] if cfg.dynamic_sampling else list(range(len(examples)))
    return examples, rolls, torch.cat(verdicts), torch.cat(rewards), keep, cursor


def build_critic_trainer(cfg: RLSection, info) -> Trainer:
    """PPO's critic, in a trainer of its own at `critic_lr`: the first reward model (COOL: the critic
    starts from the RM), else the policy's blocks with a fresh value head."""
    from lmforge.align.reward import RewardModel, load_reward_model
    from lmforge.model import load_model

    if cfg.reward_models:
        critic = load_reward_model(cfg.reward_models[0]).train()
    else:
        critic = RewardModel.from_lm(load_model(cfg.init_from).float(), seed=cfg.seed).train()
    return Trainer(critic, dataclasses.replace(cfg.train_section(), lr=cfg.critic_lr), info)


@torch.no_grad()
def ppo_targets(batches: list[Batch], rewards: torch.Tensor, critic, cfg: RLSection) -> None:
    """Per-token rewards (the answer's reward at its last token, minus kl * (log pi_old - log ref) at
    every token), the critic's values, then GAE: sets each batch's `advantages` (B, L) and its
    returns in `rewards` (B, L)."""
    from lmforge.align.advantages import gae

    at = 0
    for b in batches:
        mask = b.loss_mask
        n = mask.shape[0]
        token_r = torch.zeros(mask.shape)
        last = mask.shape[1] - 1 - mask.flip(1).float().argmax(1)  # each row's last answer token
        token_r[torch.arange(n), last] = rewards[at:at + n].float()
        if b.ref_logps is not None and cfg.kl:
            token_r -= cfg.kl * (b.old_logps - b.ref_logps) * mask
        values = token_values(critic, b)
        b.advantages, b.rewards = gae(token_r, values, mask, gamma=1.0, lam=cfg.gae_lambda)
        at += n


def rl_batch(rollouts, advantages: torch.Tensor, policy, reference, pad: int, micro_batch: int,
             old_logps: bool = True) -> list[Batch]:
    """Micro-batches of the rollouts' rows with advantages, the sampling policy's log-probs (unless
    `old_logps` is off: one update per rollout, where the loss takes them from its own forward, as TRL
    does) and (with a reference) the reference's."""
    batches = []
    for s in range(0, len(rollouts), micro_batch):
        b = lm_batch([r.encoded() for r in rollouts[s:s + micro_batch]], pad)
        b.advantages = advantages[s:s + micro_batch].float()
        if old_logps:
            b.old_logps = token_logps(policy, b)
        if reference is not None:
            b.ref_logps = token_logps(reference, b)
        batches.append(b)
    return batches


def policy_batches(cfg: RLSection, rolls, rewards: torch.Tensor, model, reference, pad: int,
                   critic_trainer=None, warming: bool = False) -> tuple[list[Batch], StepStats | None]:
    """One step's policy micro-batches from its rollouts and their rewards, by algorithm, and, for PPO,
    the critic's update on the same rollouts (its stats; None for the others). `warming`: PPO's critic
    warm-up, when the critic learns and the policy gets no batches. `rl()` and bench/rl_bench.py run
    this same step."""
    critic_stats = None
    if cfg.algorithm == "ppo":
        batches = rl_batch(rolls, torch.zeros(len(rolls)), model, reference, pad, cfg.micro_batch)
        ppo_targets(batches, rewards, critic_trainer.model, cfg)
        critic_stats = critic_trainer.step(batches, ValueLoss(), cfg.critic_lr)
        if warming:
            batches = []
    elif cfg.algorithm == "rft":  # rejection sampling: learn each group's best answer, when it stands out
        floor = cfg.rft_min_reward if cfg.rft_min_reward is not None else (1.0 if cfg.reward == "checker" else None)
        best = best_of_groups(rewards, cfg.group, floor)
        batches = [lm_batch([rolls[i].encoded() for i in best[s:s + cfg.micro_batch]], pad)
                   for s in range(0, len(best), cfg.micro_batch)]
    else:
        adv = grpo_advantages(rewards, cfg.group) if cfg.algorithm == "grpo" else rloo_advantages(rewards, cfg.group)
        # one optimizer step per rollout: the sampling policy is the one being updated, so its
        # log-probs come from the loss's own forward instead of another pass
        batches = rl_batch(rolls, adv, model, reference, pad, cfg.micro_batch, old_logps=False)
    return batches, critic_stats


def rl(cfg: RLSection, out_dir: str | Path, *, resume: bool = True, console: Console | None = None,
       device: str = "auto") -> dict:
    """Optimise `cfg.init_from` online on the tasks; returns the summary (also rl.json)."""
    from lmforge.align.accuracy import task_accuracy
    from lmforge.align.sft import print_accuracy, task_splits
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer

    out_dir, info, console = setup("rl", cfg, out_dir, device, console)
    if info.distributed:
        raise ValueError("lmforge rl runs rollout and training in one process for now (colocated); "
                         "run it without torchrun")
    began = time.perf_counter()
    tok = Tokenizer.load(cfg.init_from)
    train, test = task_splits(cfg, "rl")  # prompts SFT never saw (lmforge.align.tasks, the splits)
    policy = load_model(cfg.init_from).float()
    reference = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.kl else None
    trainer = Trainer(policy, cfg.train_section(), info)
    model = trainer.model
    # PPO puts the KL into the reward (COOL); GRPO / RLOO into the loss
    loss_fn = NextTokenLoss() if cfg.algorithm == "rft" else PolicyLoss(
        cfg.clip, 0.0 if cfg.algorithm == "ppo" else cfg.kl, cfg.aggregate, cfg.kl_weighted)
    ptx_loader = None
    if cfg.ptx and not cfg.ptx_data:
        raise ValueError("rl.ptx > 0 needs rl.ptx_data: a folder of pre-training token shards (`lmforge data` "
                         "writes them; `lmforge run` uses the run's own)")
    if cfg.ptx:  # COOL's PTX: pre-training rows in every policy update
        from lmforge.train.loader import PackedLoader

        ptx_loader = PackedLoader(cfg.ptx_data, policy.cfg.vocab_size, cfg.seq_len, cfg.ptx_rows, cfg.ptx_rows,
                                  seed=cfg.seed)
        loss_fn = PretrainMix(loss_fn, cfg.ptx)
    critic_trainer = build_critic_trainer(cfg, info) if cfg.algorithm == "ppo" else None
    rm_rewards = {"rm": RMRewards, "polar": PolarRewards}[cfg.reward](cfg, tok) if cfg.reward != "checker" else None
    online = cfg.rounds > 1 or cfg.hack_window > 0  # online RLHF: the reward models learn as the policy does
    collector = PairCollector() if online else None
    detector = HackingDetector(cfg.hack_window, length_ratio=cfg.hack_length_ratio) if cfg.hack_window else None
    round_len, patches = max(1, cfg.steps // cfg.rounds), []
    warm_until = cfg.critic_warmup if cfg.algorithm == "ppo" else 0
    pad = tok.pad_id or 0
    system = cfg.system_prompt or None
    order = np.random.default_rng(cfg.seed).permutation(len(train))

    def score(examples, rolls) -> tuple[torch.Tensor, torch.Tensor]:  # (checker verdicts, rewards)
        answers = [r.text for r in rolls]
        verdicts, rewards = checker_rewards(examples, answers, cfg.group, cfg.malformed_reward, cfg.partial_credit)
        return verdicts, rewards if rm_rewards is None else rm_rewards(examples, answers, cfg.group)

    def held_out(examples=test) -> dict:
        acc = task_accuracy(model, tok, examples, cfg.max_new_tokens, system)
        model.train()
        return acc

    # RL on a subset of the tasks: every task's held-out accuracy too, before and after, so what the
    # subset's training does to the rest is measured (the same seed's held-out draw over all tasks)
    every = make_examples(cfg.every_examples, cfg.seed, "test", None) if cfg.tasks else None

    ckpt_root = out_dir / "checkpoints"
    step, before, before_every, cursor = 0, None, None, 0  # cursor: the prompts of `order` drawn so far
    correct_before: dict[str, list[bool]] = {}  # the starting model's verdicts, for the paired change
    if resume and (state := trainer.restore(ckpt_root)) is not None:
        step, before, before_every = state["step"], state["before"], state.get("before_every")
        correct_before = state.get("correct_before", {})
        cursor = state.get("cursor", step * cfg.global_batch)
        if critic_trainer is not None:
            critic_trainer.restore(ckpt_root / "critic")
        if ptx_loader is not None:
            ptx_loader.load_state_dict(state["ptx"])
        patches = state.get("patches", [])
        if patches:  # the reward models as the last patch left them
            from lmforge.align.reward import load_reward_model

            rm_rewards.members = [load_reward_model(Path(d)) for d in patches[-1]["models"]]
        console.print(f"[green]resumed rl from {state['path']} (step {step})[/green]")
    logger = MetricsLogger(out_dir, info.is_main, cfg.tensorboard, console, resume_step=step or None)
    if before is None:  # a fresh start: the starting model's figures (a resume restores them)
        start = held_out()
        before, correct_before["trained"] = start["accuracy"], start["correct"]
        logger.log({"step": 0, "heldout_acc": before["all"]})
        if every is not None:
            start = held_out(every)
            before_every, correct_before["every"] = start["accuracy"], start["correct"]
    if detector is not None:
        detector.held_out(before["all"], len(test))  # the starting model's, the first best
    console.print(f"[bold]rl[/bold] ({cfg.algorithm}): {cfg.steps} steps x {cfg.global_batch} prompts x {cfg.group} "
                  f"answers, reward from {REWARD_FROM[cfg.reward]}, kl {cfg.kl}, lr {cfg.lr}; held-out accuracy before: "
                  f"{100 * before['all']:.1f}%")
    critic_save = (lambda n: critic_trainer.save(ckpt_root / "critic", n, {})) if critic_trainer else None
    # closing: the rollout workers (Ray actors) live exactly as long as the loop, also when a step raises
    with (contextlib.closing(rollout_engine(cfg, model, tok)) as rollouts,
          StepCheckpoints(trainer, ckpt_root, cfg.ckpt_every, console, also=critic_save) as ckpt):
        rollouts.sync(model)  # the workers start from the trainer's weights (a resumed run's too)
        while step < cfg.steps:
            t0 = time.perf_counter()
            model.eval()
            examples, rolls, verdicts, rewards, keep, cursor = draw_groups(
                cfg, rollouts, tok, train, order, cursor, system, score)
            t_roll = time.perf_counter() - t0
            answers = [r.text for r in rolls]
            if collector is not None:
                collector.add(examples, answers, verdicts, rewards, cfg.group, domain_of)
            # what the update learns from: every group, or (dynamic sampling) the ones with unequal rewards
            rows = [j * cfg.group + k for j in keep for k in range(cfg.group)]
            # the critic learns alone first (COOL: 50 iterations), and after a patch
            batches, critic_stats = policy_batches(cfg, [rolls[i] for i in rows], rewards[rows], model, reference,
                                                   pad, critic_trainer, warming=step < warm_until)
            model.train()
            lr = lr_at(step, peak=cfg.lr, total=cfg.steps, warmup=cfg.warmup_steps, schedule=cfg.schedule,
                       min_ratio=cfg.min_lr_ratio)
            if batches and ptx_loader is not None:
                pretrain = ptx_loader.next_step()
                loss_fn.ptx_tokens = sum(b.n_targets for b in pretrain)
                batches = batches + pretrain
            stats = trainer.step(batches, loss_fn, lr) if batches else None
            if stats is None:  # RFT with no standout answer, or PPO's critic warm-up: the policy stays
                stats = StepStats(0.0, {}, None, "no policy update this step")
            if critic_stats is not None:
                stats.parts["vf"] = critic_stats.loss
            t_sync = time.perf_counter()
            rollouts.sync(model)
            t_sync = time.perf_counter() - t_sync
            step += 1
            new_tokens = sum(len(r.completion) for r in rolls)
            row = {"step": step, "loss": stats.loss, "lr": lr, "grad_norm": stats.grad_norm,
                   "reward": float(rewards.mean()), "accuracy": float((verdicts == 1).float().mean()),
                   **task_accuracy_parts(examples, verdicts, cfg.group),
                   "response_len": new_tokens / len(rolls), "prompts_answered": len(examples),
                   "groups_trained": len(keep), **{k: v for k, v in stats.parts.items() if k != "pg"},
                   "rollout_s": t_roll, "train_s": time.perf_counter() - t0 - t_roll - t_sync, "sync_s": t_sync,
                   "rollout_tokens_per_s": new_tokens / max(t_roll, 1e-9),
                   "tokens_per_s": sum(int(b.input_ids.numel()) for b in batches) / (time.perf_counter() - t0)}
            logger.log(row, print_line=step % cfg.log_every == 0 or step == cfg.steps)
            heldout = None
            if cfg.eval_every and (step % cfg.eval_every == 0) and step < cfg.steps:
                heldout = held_out()["accuracy"]["all"]
                logger.log({"step": step, "heldout_acc": heldout})
            if online and step < cfg.steps:
                moved = step > warm_until  # the policy moved this step: what the detector watches
                reason = detector.update(row["reward"], row["accuracy"], row["response_len"]) if detector and moved else None
                if detector and heldout is not None and not reason:
                    reason = detector.held_out(heldout, len(test))
                pairs = None
                if reason:  # the fast path: patch now, on the pairs the reward models got wrong
                    pairs, reason = collector.take(offending_first=True), f"fast path: {reason}"
                elif cfg.rounds > 1 and step % round_len == 0:
                    pairs, reason = collector.take(), f"round {step // round_len} of {cfg.rounds} ended"
                if pairs:
                    folder = out_dir / "rm_patches" / f"step-{step:05d}"
                    rm_rewards.members = patch_reward_models(rm_rewards.members, pairs, tok, cfg, folder, console, info)
                    patches.append({"step": step, "reason": reason, "pairs": len(pairs),
                                    "models": [str(folder / f"member-{k}" / "model")
                                               for k in range(len(rm_rewards.members))]})
                    logger.log({"step": step, "rm_patch_pairs": len(pairs)})
                    if cfg.algorithm == "ppo":  # the critic relearns the patched reward's scale alone first
                        warm_until = step + cfg.critic_warmup
                    if detector:
                        detector.reset()
                    console.print(f"[yellow]step {step}: {reason}; reward model(s) updated on {len(pairs)} "
                                  "checker-labelled pairs of the policy's answers[/yellow]")
            if ckpt.after_step(step, step == cfg.steps, lambda: {
                    "before": before, "before_every": before_every, "correct_before": correct_before,
                    "patches": patches, "cursor": cursor,
                    **({"ptx": ptx_loader.state_dict()} if ptx_loader else {})}):
                break
    interrupted = ckpt.interrupted
    trainer.close()
    summary = {"algorithm": cfg.algorithm, "steps": step, "interrupted": interrupted, "tasks": cfg.tasks}
    if interrupted:
        logger.close()
        return summary
    after = held_out()
    logger.log({"step": step, "heldout_acc": after["accuracy"]["all"]})
    logger.close()
    model_dir = trainer.export(out_dir / "model", cfg.init_from)
    png = plot_rl(logger.path, out_dir / "curves.png")
    summary.update(model=str(model_dir), rm_patches=patches, accuracy_before=before, accuracy_after=after["accuracy"],
                   samples=after["samples"], curves=png and png.name, seconds=time.perf_counter() - began,
                   config=dataclasses.asdict(cfg))
    # the same prompts before and after: the change prompt by prompt, with McNemar's p (None on a resume
    # from a checkpoint that predates the verdicts)
    changes = {"trained": paired_change_of(test, correct_before.get("trained"), after["correct"])}
    summary["one_answer"] = after["one_answer"]
    if before_every is not None:  # None on a resume from a checkpoint that predates the measurement
        after_every = held_out(every)
        summary.update(accuracy_every_before=before_every, accuracy_every_after=after_every["accuracy"],
                       one_answer_every=after_every["one_answer"])
        changes["every"] = paired_change_of(every, correct_before.get("every"), after_every["correct"])
    summary["change"] = changes
    write_json(out_dir / "rl.json", summary)
    print_accuracy(before, after["accuracy"], console, title=f"held-out task accuracy ({cfg.algorithm})")
    if before_every is not None:
        print_accuracy(before_every, summary["accuracy_every_after"], console,
                       title=f"every task, trained on {', '.join(cfg.tasks)} only")
    for name, change in changes.items():
        if change is not None:
            label = "the trained tasks" if name == "trained" and before_every is not None else "every task"
            console.print(f"held-out change on {label}, prompt by prompt: {describe(change['all'])}")
    return summary


def paired_change_of(examples, before: list[bool] | None, after: list[bool]) -> dict | None:
    """Per task and overall, the paired change of the verdicts on `examples` (lmforge.significance)."""
    if before is None or len(before) != len(after):
        return None
    return paired_by_task([ex.task for ex in examples], before, after)


def plot_rl(metrics: Path, out_png: Path) -> Path | None:
    """Training reward and accuracy per step beside held-out accuracy: reward hacking shows as the
    first rising while the last falls."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from lmforge.train.metrics import read_metrics

    rows = read_metrics(metrics)
    train = [r for r in rows if "reward" in r]
    held = [r for r in rows if "heldout_acc" in r]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r["step"] for r in train], [r["reward"] for r in train], label="reward (rollouts)", alpha=0.7)
    ax.plot([r["step"] for r in train], [r["accuracy"] for r in train], label="accuracy (rollouts)", alpha=0.7)
    ax.plot([r["step"] for r in held], [r["heldout_acc"] for r in held], "o-", label="held-out accuracy (greedy)")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
