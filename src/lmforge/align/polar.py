"""POLAR: policy-discriminative reward pre-training (arXiv 2507.05197; docs/papers.md §7), as
`lmforge polar` and the `polar` stage of `lmforge run`.

A POLAR reward model scores a candidate answer against a reference answer to the same prompt:

    input  = render(prompt + reference) <s> render(prompt + candidate) </s>

(the second rendering's BOS separates the two; the reward is read at the final EOS, as for the
other reward models of lmforge.align.reward).

1. **Pre-training** needs no labels: a pool of policies (checkpoints at different steps, and each at
   several temperatures) answers the same prompts, two samples per policy. For policy A's samples
   A1, A2 and another policy B's B1, the loss is -log sigmoid(r(p, A1, A2) - r(p, A1, B1)): an answer
   from the reference's own policy should score higher than one from another policy.
2. **Fine-tuning** on ranked triples from the checkers, A > B > C with A the reference:
   -log sigmoid(r(p, A, B) - r(p, A, C)). Here A is the task's reference answer and the ranked
   candidates are correct (the reference's text) > wrong > malformed.

The stage trains the POLAR model (pre-training then fine-tuning) and, as the paper's ablation, the
same fine-tuning from the SFT model without pre-training, and reports both on held-out triples.

    out_dir/samples.json   the pool's answers (so a rerun does not sample again)
    out_dir/pretrain/, out_dir/finetune/, out_dir/finetune-only/   metrics, checkpoints, model/
    out_dir/polar.json     the summary
"""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lmforge.align.config import PolarSection
from lmforge.align.loop import setup
from lmforge.align.losses import RewardLoss
from lmforge.align.reward import RewardModel
from lmforge.align.rm import train_reward_model
from lmforge.align.tasks import TASKS, Example
from lmforge.atomic import write_json


def polar_ids(tokenizer, prompt: list[dict], reference: str, candidate: str) -> list[int]:
    """The ids a POLAR reward model scores: reference conversation, candidate conversation, reward token."""
    def conv(answer):
        return tokenizer.encode(tokenizer.render_chat([*prompt, {"role": "assistant", "content": answer}],
                                                      add_generation_prompt=False))
    return conv(reference) + conv(candidate) + [tokenizer.eos_id]


def polar_score(rm: RewardModel, tokenizer, prompt: list[dict], reference: str, candidates: list[str]) -> torch.Tensor:
    """The reward of each candidate against the reference, (N,) fp32 (what RFT / PPO with POLAR use)."""
    from lmforge.align.reward import score_ids

    return score_ids(rm, [polar_ids(tokenizer, prompt, reference, c) for c in candidates], tokenizer.pad_id or 0)


def load_policy(path: str, device: str = "cpu"):
    """(model, tokenizer) of an HF directory or a training checkpoint (exported on the fly)."""
    from lmforge.inference import load_for_inference
    from lmforge.train.export import export_training_checkpoint, is_training_checkpoint

    if is_training_checkpoint(path):
        with tempfile.TemporaryDirectory() as d:
            export_training_checkpoint(path, d)
            model, _ = load_for_inference(d, device=device)
        settings = json.loads((Path(path).parent.parent / "config.json").read_text())
        from lmforge.tokenizer import Tokenizer

        return model, Tokenizer.load(settings["train"]["tokenizer"])
    return load_for_inference(path, device=device)


def sample_pool(cfg: PolarSection, prompts: list[list[dict]], console: Console, device: str) -> list[dict]:
    """Two answers per prompt from every (policy, temperature): [{"policy", "temperature", "answers": [[a1, a2], ...]}]."""
    from lmforge.align.accuracy import generate_answers

    pool = []
    for path in cfg.policies:
        model, tok = load_policy(path, device)
        for t in cfg.temperatures:
            answers = generate_answers(model, tok, prompts, cfg.max_new_tokens, temperature=t, group=2, seed=cfg.seed)
            pool.append({"policy": path, "temperature": t,
                         "answers": [answers[i:i + 2] for i in range(0, len(answers), 2)]})
            console.print(f"  pool: {path} at T={t}: {len(prompts)} prompts x 2 answers")
    return pool


def pretraining_pairs(tok, prompts: list[list[dict]], pool: list[dict], seed: int, seq_len: int
                      ) -> list[tuple[list[int], list[int]]]:
    """(r(p, A1, A2) ids, r(p, A1, B1) ids) for every prompt and policy A, with B another policy drawn at
    random; pairs whose two candidates are the same text teach nothing and are left out."""
    rng = random.Random(seed)
    out = []
    for j, prompt in enumerate(prompts):
        for a, policy in enumerate(pool):
            b = rng.choice([i for i in range(len(pool)) if i != a])
            a1, a2 = policy["answers"][j]
            b1 = pool[b]["answers"][j][0]
            if a2.strip() == b1.strip():
                continue
            pair = (polar_ids(tok, prompt, a1, a2), polar_ids(tok, prompt, a1, b1))
            if max(map(len, pair)) <= seq_len:
                out.append(pair)
    return out


def ranked_triples(examples: list[Example], seed: int) -> list[tuple[list[dict], str, list[str]]]:
    """(prompt, reference, [correct, wrong, malformed]) per example: the checkers' ranking."""
    rng = random.Random(seed)
    out = []
    for ex in examples:
        task = TASKS[ex.task]
        out.append(([{"role": "user", "content": ex.prompt}], ex.answer,
                    [ex.answer, task.wrong(ex, rng), task.malformed(ex, rng)]))
    return out


def triple_pairs(tok, triples, seq_len: int) -> list[tuple[list[int], list[int]]]:
    """Adjacent ranks as pairs: (A, correct) > (A, wrong) and (A, wrong) > (A, malformed)."""
    out = []
    for prompt, ref, ranked in triples:
        for better, worse in zip(ranked, ranked[1:]):
            pair = (polar_ids(tok, prompt, ref, better), polar_ids(tok, prompt, ref, worse))
            if max(map(len, pair)) <= seq_len:
                out.append(pair)
    return out


def triple_accuracy(rm: RewardModel, tok, triples) -> dict[str, float]:
    """Held-out: share of triples with r(A, correct) > r(A, wrong), and with r(A, wrong) > r(A, malformed)."""
    hits = torch.zeros(2)
    for prompt, ref, ranked in triples:
        s = polar_score(rm, tok, prompt, ref, ranked)
        hits += torch.stack([s[0] > s[1], s[1] > s[2]]).float()
    acc = (hits / max(len(triples), 1)).tolist()
    return {"correct > wrong": acc[0], "wrong > malformed": acc[1], "both": sum(acc) / 2}


def polar(cfg: PolarSection, out_dir: str | Path, *, resume: bool = True, console: Console | None = None,
          device: str = "auto") -> dict:
    """Sample the pool, pre-train, fine-tune (and fine-tune without pre-training); the summary (polar.json)."""
    from lmforge.align.sft import task_splits
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer

    out_dir, info, console = setup("polar", cfg, out_dir, device, console)
    if len(cfg.policies) * len(cfg.temperatures) < 2:
        raise ValueError("polar.policies x polar.temperatures: the pool needs at least two policies to tell apart")
    began = time.perf_counter()
    tok = Tokenizer.load(cfg.init_from)
    train, test = task_splits(cfg)
    prompts = [[{"role": "user", "content": ex.prompt}] for ex in train[:cfg.prompts]]

    samples_file = out_dir / "samples.json"
    if resume and samples_file.is_file():
        pool = json.loads(samples_file.read_text())
    else:
        console.print(f"[bold]polar[/bold]: sampling {len(cfg.policies)} policies x {len(cfg.temperatures)} "
                      f"temperatures on {len(prompts)} prompts")
        pool = sample_pool(cfg, prompts, console, str(info.device))  # every rank: seeded, the same answers
        if info.is_main:
            write_json(samples_file, pool)
    pre_pairs = pretraining_pairs(tok, prompts, pool, cfg.seed, cfg.seq_len)
    fine_pairs = triple_pairs(tok, ranked_triples(train, cfg.seed), cfg.seq_len)
    held_out = ranked_triples(test, cfg.seed + 1)
    console.print(f"polar: {len(pre_pairs)} pre-training pairs from {len(pool)} policies, {len(fine_pairs)} "
                  f"fine-tuning pairs, {len(held_out)} held-out triples")

    def fresh() -> RewardModel:
        return RewardModel.from_lm(load_model(cfg.init_from).float(), seed=cfg.seed)

    def train(model: RewardModel, pairs, steps: int, part: str) -> RewardModel:
        return train_reward_model(cfg, model, pairs, RewardLoss("bt"), out_dir / part, seed=cfg.seed,
                                  pad=tok.pad_id or 0, resume=resume, console=console, info=info,
                                  name=f"polar ({part})", steps=steps)

    pretrained = train(fresh(), pre_pairs, cfg.pretrain_steps, "pretrain") if cfg.pretrain_steps and pre_pairs \
        else fresh()
    accuracy = {"pre-trained only": triple_accuracy(pretrained, tok, held_out)}
    tuned = train(pretrained, fine_pairs, cfg.steps, "finetune")
    accuracy["POLAR (pre-trained + fine-tuned)"] = triple_accuracy(tuned, tok, held_out)
    baseline = train(fresh(), fine_pairs, cfg.steps, "finetune-only")
    accuracy["fine-tuned only"] = triple_accuracy(baseline, tok, held_out)
    summary = {"policies": [{"policy": p["policy"], "temperature": p["temperature"]} for p in pool],
               "pretraining_pairs": len(pre_pairs), "finetuning_pairs": len(fine_pairs),
               "held_out_triples": len(held_out), "accuracy": accuracy, "model": str(out_dir / "finetune" / "model"),
               "seconds": time.perf_counter() - began, "config": dataclasses.asdict(cfg)}
    if info.is_main:
        write_json(out_dir / "polar.json", summary)
        table = Table(title="POLAR: held-out ranked triples (reference = the task's answer)")
        for col in ("model", *next(iter(accuracy.values()))):
            table.add_column(col, justify="left" if col == "model" else "right")
        for name, row in accuracy.items():
            table.add_row(name, *(f"{100 * v:.1f}%" for v in row.values()))
        console.print(table)
    return summary
