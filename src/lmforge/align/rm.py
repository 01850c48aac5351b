"""Reward models: `lmforge rm` and the `rm` stage of `lmforge run` (InternLM2 report, arXiv
2403.17297, section 4.2, COOL RLHF's conditional reward model; docs/papers.md §7).

From the SFT model (or any HF directory), on preference pairs: a JSONL file of
{prompt, chosen, rejected, domain}, or pairs labelled by the built-in tasks' checkers (correct >
wrong > malformed). With `loss = "cool"` each pair is scored under its domain's system prompt
(one model, several domains' preferences) with the focal ranking loss and the log barrier; with
"bt", plain Bradley-Terry. `ensemble = K` trains K members with different seeds and data orders;
with the built-in data and `planted`, member 0 also learns from a biased labeller (a wrong answer
that restates the question preferred to the right one), and the summary shows how each member,
the ensemble's combinations and the members' weight average (soup) rank held-out pairs and the
planted exploit.

    out_dir/member-k/   metrics.jsonl, checkpoints/, model/ (LlamaForSequenceClassification + tokenizer)
    out_dir/soup/       the members' weights averaged (K > 1)
    out_dir/rm.json     the summary: accuracy per member, ensemble rule and soup; the exploit probe
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lmforge.align.config import TASK_DATA, RMSection
from lmforge.align.conversations import Pair, Skipped, read_pairs
from lmforge.align.ensemble import combine, soup, standardise
from lmforge.align.loop import fit, report_skipped, setup
from lmforge.align.losses import RewardLoss
from lmforge.align.pair_rows import PairLoader, reward_batch
from lmforge.align.preferences import biased_pairs, conditioned, exploit_pairs, plain, task_pairs
from lmforge.align.reward import RewardModel, load_reward_model, reward_ids, save_reward_model, score
from lmforge.atomic import write_json


def rm_data(cfg: RMSection, console: Console) -> tuple[list[Pair], list[Pair], list[Pair], list[Pair]]:
    """(training pairs, held-out pairs, biased pairs for the planted member, exploit probe)."""
    if cfg.data != TASK_DATA:
        skipped = Skipped()
        pairs = read_pairs(cfg.data, skipped=skipped)
        report_skipped(cfg.data, skipped, console)
        n_test = max(1, len(pairs) // 10)  # the last tenth of the file is held out
        return pairs[:-n_test], pairs[-n_test:], [], []
    from lmforge.align.sft import task_splits

    train, test = task_splits(cfg)
    biased = biased_pairs(train, cfg.seed) if cfg.planted and cfg.ensemble > 1 else []
    return task_pairs(train, cfg.seed), task_pairs(test, cfg.seed + 7), biased, exploit_pairs(test, cfg.seed)


def _render(cfg: RMSection):
    return conditioned if cfg.loss == "cool" else plain


def encode_pairs(tok, pairs: list[Pair], cfg: RMSection) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Each pair's chosen and rejected reward-model ids; pairs longer than seq_len are dropped (counted)."""
    render, out, dropped = _render(cfg), [], 0
    for p in pairs:
        c, r = (reward_ids(tok, render(p.prompt, a, p.domain)) for a in (p.chosen, p.rejected))
        if max(len(c), len(r)) > cfg.seq_len:
            dropped += 1
            continue
        out.append((c, r))
    return out, dropped


def train_reward_model(cfg, model: RewardModel, pairs: list[tuple[list[int], list[int]]], loss, out_dir: Path, *,
                       seed: int, pad: int, resume: bool, console: Console, info, name: str,
                       steps: int | None = None) -> RewardModel:
    """Train `model` on encoded (chosen, rejected) pairs with `loss` for `steps` (default cfg.steps);
    the trained model, also exported to out_dir/model with the tokenizer of cfg.init_from. Reward
    models and POLAR's pre-training and fine-tuning all train here."""
    from lmforge.train.trainer import Trainer

    loader = PairLoader(len(pairs), lambda idx: reward_batch([pairs[i] for i in idx], pad, cfg.seq_len),
                        cfg.global_batch, cfg.micro_batch, info.dp_rank, info.dp_size, seed)
    tc = dataclasses.replace(cfg.train_section(), seed=seed, steps=steps or cfg.steps)
    trainer = Trainer(model.train(), tc, info, accum=loader.accum)
    result = fit(trainer, loader, loss, out_dir, resume=resume, console=console)
    trainer.close()
    if result.interrupted:
        raise InterruptedError(f"{name} stopped at step {result.steps}; rerun to resume")
    full = trainer.full_state_dict(every_rank=True)  # POLAR fine-tunes its pre-trained model on every rank
    with torch.device("meta"):
        trained = RewardModel(model.cfg)
    trained.load_state_dict({k: v.float() for k, v in full.items()}, assign=True)
    if info.is_main:
        save_reward_model(trained, out_dir / "model", cfg.init_from)
    return trained


def train_member(cfg: RMSection, k: int, pairs: list[Pair], out_dir: Path, *, resume: bool, console: Console,
                 info) -> Path:
    """Train reward model k (seed cfg.seed + k) on `pairs`; its exported directory."""
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(cfg.init_from)
    encoded, dropped = encode_pairs(tok, pairs, cfg)
    seed = cfg.seed + k
    console.print(f"[bold]rm member {k}[/bold]: {len(encoded)} pairs ({dropped} longer than {cfg.seq_len} tokens "
                  f"dropped), loss {cfg.loss}, {cfg.steps} steps x {cfg.global_batch} pairs")
    train_reward_model(cfg, RewardModel.from_lm(load_model(cfg.init_from).float(), seed=seed), encoded,
                       RewardLoss(cfg.loss, cfg.focal_gamma, cfg.barrier, cfg.barrier_bound), out_dir, seed=seed,
                       pad=tok.pad_id or 0, resume=resume, console=console, info=info, name=f"rm member {k}")
    return out_dir / "model"


def pair_scores(rm: RewardModel, tok, pairs: list[Pair], cfg: RMSection) -> torch.Tensor:
    """(2, N) rewards of the chosen and the rejected answers."""
    render = _render(cfg)
    convs = [render(p.prompt, a, p.domain) for p in pairs for a in (p.chosen, p.rejected)]
    return score(rm, tok, convs).view(-1, 2).t()


def evaluate(members: list[RewardModel], souped: RewardModel | None, tok, probes: dict[str, list[Pair]],
             cfg: RMSection) -> dict:
    """Pairwise accuracy (share of pairs whose chosen answer scores higher) of each member, each
    ensemble rule and the soup, on each probe set."""
    out: dict[str, dict[str, float]] = {}
    for name, pairs in probes.items():
        if not pairs:
            continue
        scores = torch.stack([pair_scores(m, tok, pairs, cfg) for m in members])  # (K, 2, N)
        K, _, N = scores.shape
        flat = standardise(scores.reshape(K, 2 * N)).reshape(K, 2, N)
        row = {f"member {k}": float((scores[k, 0] > scores[k, 1]).float().mean()) for k in range(K)}
        if K > 1:
            for how in ("mean", "min", "mean_minus_std"):
                c = combine(flat.reshape(K, 2 * N), how, cfg.uncertainty).reshape(2, N)
                row[f"ensemble {how}"] = float((c[0] > c[1]).float().mean())
        if souped is not None:
            s = pair_scores(souped, tok, pairs, cfg)
            row["soup"] = float((s[0] > s[1]).float().mean())
        out[name] = row
    return out


def rm(cfg: RMSection, out_dir: str | Path, *, resume: bool = True, console: Console | None = None,
       device: str = "auto") -> dict:
    """Train the section's reward model(s); returns the summary (also rm.json)."""
    from lmforge.tokenizer import Tokenizer

    out_dir, info, console = setup("rm", cfg, out_dir, device, console)
    began = time.perf_counter()
    train, test, biased, exploit = rm_data(cfg, console)
    member_dirs = []
    for k in range(cfg.ensemble):
        pairs = train + (biased if k == 0 else [])
        member_dirs.append(train_member(cfg, k, pairs, out_dir / f"member-{k}", resume=resume, console=console,
                                        info=info))
    summary = {"pairs": len(train), "held_out_pairs": len(test), "biased_pairs": len(biased), "loss": cfg.loss,
               "members": [str(d) for d in member_dirs], "config": dataclasses.asdict(cfg)}
    if info.is_main:
        members = [load_reward_model(d) for d in member_dirs]
        soup_rm = None
        if cfg.ensemble > 1:
            with torch.device("meta"):
                soup_rm = RewardModel(members[0].cfg)
            soup_rm.load_state_dict(soup([m.state_dict() for m in members]), assign=True)
            summary["soup"] = str(save_reward_model(soup_rm, out_dir / "soup", cfg.init_from))
        tok = Tokenizer.load(cfg.init_from)
        summary["accuracy"] = evaluate(members, soup_rm, tok, {"held_out": test, "exploit": exploit}, cfg)
        summary["seconds"] = time.perf_counter() - began
        write_json(out_dir / "rm.json", summary)
        print_rm_accuracy(summary["accuracy"], console)
    return summary


def print_rm_accuracy(accuracy: dict, console: Console) -> None:
    probes = list(accuracy)
    table = Table(title="reward model pairwise accuracy (share of pairs ranked right)")
    table.add_column("model")
    for p in probes:
        table.add_column(p, justify="right")
    for name in accuracy[probes[0]]:
        table.add_row(name, *(f"{100 * accuracy[p].get(name, float('nan')):.1f}%" for p in probes))
    console.print(table)
