"""Alignment training throughput: lmforge's SFT and reward-model training against TRL's SFTTrainer
and RewardTrainer, on the same model, the same data and the same number of optimizer steps,
measured side by side in one run and printed as ratios (issue goal: >= 1.2x on CPU).

(a) SFT on the built-in tasks' conversations, the loss on assistant tokens only. lmforge packs
    conversations several to a row of seq_len + 1 tokens, attention and positions kept inside each
    conversation by document ids. TRL runs twice: with `packing=True` (its default "bfd" strategy,
    which turns on padding-free batches: the step's packed rows, each of at most seq_len + 1
    tokens, concatenated into one sequence with restarting position ids, from which transformers
    builds the block-diagonal mask), the same rows per step; and with `packing=False` (each
    conversation its own row, padded to the batch's longest), as many conversations per step as
    lmforge's rows hold on average. Both are TRL's prompt-completion form, `completion_only_loss`.
(b) Reward model on the tasks' preference pairs, Bradley-Terry loss on both sides, the same pairs per
    step: lmforge's RewardModel on its sequences packed several to a row of seq_len tokens (the
    reward read at each one's appended EOS token), TRL's RewardTrainer on the conversational pairs (LlamaForSequenceClassification,
    num_labels = 1, the reward read at the last token).

Both sides: fp32 on the CPU, no activation checkpointing (TRL's configs default to gradient
checkpointing, which recomputes the forward pass in backward: turned off here, as lmforge's recipes
have it), AdamW (betas 0.9/0.95, no weight decay, the same constant learning rate), gradient
clipping at 1.0, one micro-batch per step, TRL's other settings at their defaults (its fused AdamW
among them). Each run builds its trainer afresh from the same checkpoint, runs one
warm-up step, then times `--steps` steps: lmforge around `loader.next_step()` + `trainer.step()`,
TRL from the warm-up step's `on_step_end` callback to the last step's (its data loading, step and
callbacks; `train()`'s setup is not timed). Tokens are counted from the batches each side fed its
model: real tokens (padding excluded) and, for SFT, the assistant tokens the loss learns. The sides
take turns, the order rotating every repeat; tokens/s are medians, the ratio (above 1: lmforge
faster) is the median of the per-repeat ratios with its 95% interval (bench/stats.py; 6 repeats or
more give one).

    python bench/align_bench.py [--quick] [--threads N] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from stats import paired_ratio, print_ratio_table  # noqa: E402

import lmforge  # noqa: E402
from lmforge.align.chat_rows import SFTLoader, encode_conversation  # noqa: E402
from lmforge.align.config import RMSection, SFTSection  # noqa: E402
from lmforge.align.losses import RewardLoss  # noqa: E402
from lmforge.align.pair_rows import PairLoader, reward_batch  # noqa: E402
from lmforge.align.reward import RewardModel  # noqa: E402
from lmforge.align.rm import encode_pairs, rm_data  # noqa: E402
from lmforge.align.sft import sft_conversations  # noqa: E402
from lmforge.machine import cpu_name  # noqa: E402
from lmforge.model import InternLM2, ModelConfig, load_model, save_model  # noqa: E402
from lmforge.train.losses import NextTokenLoss  # noqa: E402
from lmforge.train.parallel import init_distributed  # noqa: E402
from lmforge.train.schedule import lr_at  # noqa: E402
from lmforge.train.trainer import Trainer  # noqa: E402

BETAS, EPS, CLIP = (0.9, 0.95), 1e-8, 1.0  # lmforge's TrainSection defaults, given to TRL too


@dataclass
class Run:
    """One side's timed steps: seconds, and what its batches fed the model."""

    seconds: float
    real: int  # tokens of the rows, padding excluded
    learned: int  # SFT: assistant tokens in the loss; reward model: pairs


def build_model_dir(args, out: Path):
    """A tokenizer trained on English and the tasks' text, and a random InternLM2 saved beside it in
    Llama format (which lmforge and transformers both load); (tokenizer, parameter count)."""
    from lmforge.align.tasks import make_examples
    from lmforge.corpora import english_text
    from lmforge.tokenizer import train_bpe

    task_text = "\n".join(f"{e.prompt} {e.answer}" for e in make_examples(1000, seed=0))
    tok = train_bpe([english_text(200_000), task_text], vocab_size=args.vocab)
    cfg = ModelConfig(vocab_size=tok.vocab_size, dim=args.dim, n_layers=args.layers, n_heads=args.dim // 64,
                      n_kv_heads=max(1, args.dim // 128), ffn_dim=math.ceil(args.dim * 8 / 3 / 64) * 64,
                      rope_theta=10000.0, rope_scaling="none", max_seq_len=args.seq + 1,
                      bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    model = InternLM2(cfg)
    model.init_weights(0)
    save_model(model, out, fmt="llama")
    tok.save(out)
    return tok, model.num_params()


def _section(kind, model_dir: Path, args, lr: float, batch: int, **kw):
    """The stage's recipe section, as `lmforge sft` / `lmforge rm` would train with it."""
    return kind(init_from=str(model_dir), steps=args.steps + 1, seq_len=args.seq, global_batch=batch,
                micro_batch=batch, lr=lr, schedule="constant", warmup_steps=0, weight_decay=0.0,
                grad_clip=CLIP, tensorboard=False, **kw)


def _lmforge_run(trainer: Trainer, loader, loss_fn, steps: int) -> tuple[float, list]:
    """One warm-up step, then `steps` timed steps; (seconds, the timed steps' micro-batches)."""
    tc = trainer.tc

    def step(s: int) -> list:
        lr = lr_at(s, peak=tc.lr, total=tc.steps, warmup=tc.warmup_steps, schedule=tc.schedule,
                   min_ratio=tc.min_lr_ratio, decay_fraction=tc.decay_fraction)
        batches = loader.next_step()
        trainer.step(batches, loss_fn, lr)
        return batches

    step(0)
    start = time.perf_counter()
    fed = [b for s in range(1, steps + 1) for b in step(s)]
    seconds = time.perf_counter() - start
    trainer.close()
    return seconds, fed


def sft_lmforge(model_dir: Path, encoded, pad_id: int, args, info) -> Run:
    cfg = _section(SFTSection, model_dir, args, args.sft_lr, args.rows)
    loader = SFTLoader(encoded, cfg.seq_len, cfg.global_batch, cfg.micro_batch, seed=cfg.seed, pad_id=pad_id)
    trainer = Trainer(load_model(model_dir).float().train(), cfg.train_section(), info, accum=loader.accum)
    seconds, fed = _lmforge_run(trainer, loader, NextTokenLoss(), args.steps)
    return Run(seconds, sum(int((b.input_ids != pad_id).sum()) for b in fed), sum(b.n_targets for b in fed))


def rm_lmforge(model_dir: Path, encoded, pad_id: int, args, info) -> Run:
    cfg = _section(RMSection, model_dir, args, args.rm_lr, args.pairs, loss="bt")
    loader = PairLoader(len(encoded), lambda idx: reward_batch([encoded[i] for i in idx], pad_id, cfg.seq_len),
                        cfg.global_batch, cfg.micro_batch, seed=cfg.seed)
    model = RewardModel.from_lm(load_model(model_dir).float(), seed=cfg.seed).train()
    trainer = Trainer(model, cfg.train_section(), info, accum=loader.accum)
    seconds, fed = _lmforge_run(trainer, loader, RewardLoss("bt"), args.steps)
    return Run(seconds, sum(int((b.input_ids != pad_id).sum()) for b in fed), sum(len(b.seq_ends) // 2 for b in fed))


def _trl_run(trainer_cls, steps: int, **kw) -> Run:
    """Build a TRL trainer (untimed) and train one warm-up step + `steps` steps, timing the latter."""
    from transformers import PrinterCallback, TrainerCallback

    ends: list[float] = []
    fed: list[dict] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_, **__):
            ends.append(time.perf_counter())

    class Counted(trainer_cls):
        def compute_loss(self, model, inputs, *a, **k):
            fed.append({key: inputs[key] for key in ("input_ids", "attention_mask", "labels") if key in inputs})
            return super().compute_loss(model, inputs, *a, **k)

    trainer = Counted(callbacks=[StepClock()], **kw)
    trainer.remove_callback(PrinterCallback)  # it prints the training summary
    trainer.train()
    if len(ends) != steps + 1 or len(fed) != steps + 1:
        raise RuntimeError(f"TRL ran {len(ends)} steps and {len(fed)} forward passes, expected {steps + 1} of each")
    fed = fed[1:]  # the warm-up step is not timed
    if "labels" in fed[0]:  # SFT: padded rows, or one padding-free row (no attention_mask, no padding)
        real = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel() for b in fed)
        learned = sum(int((b["labels"][:, 1:] != -100).sum()) for b in fed)
    else:  # reward model: the chosen rows, then the rejected rows
        real = sum(int(b["attention_mask"].sum()) for b in fed)
        learned = sum(b["input_ids"].shape[0] // 2 for b in fed)
    return Run(ends[-1] - ends[0], real, learned)


def _trl_args(args, out: str, lr: float, batch: int) -> dict:
    # TRL's configs turn gradient checkpointing on by default (and bf16); lmforge's recipes train without
    # activation checkpointing, so TRL does too here: the same arithmetic per step on both sides.
    return dict(output_dir=out, max_steps=args.steps + 1, per_device_train_batch_size=batch, learning_rate=lr,
                gradient_checkpointing=False, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=EPS, max_grad_norm=CLIP,
                gradient_accumulation_steps=1, report_to="none", use_cpu=True, bf16=False, logging_steps=10**6,
                save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=0)


def sft_trl(model_dir: Path, dataset, packing: bool, batch: int, args, out: str) -> Run:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    config = SFTConfig(**_trl_args(args, out, args.sft_lr, batch), completion_only_loss=True, packing=packing,
                       max_length=args.seq + 1)
    return _trl_run(SFTTrainer, args.steps, model=model, args=config, train_dataset=dataset,
                    processing_class=AutoTokenizer.from_pretrained(model_dir))


def rm_trl(model_dir: Path, dataset, args, out: str) -> Run:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32,
                                                               attn_implementation="sdpa")
    config = RewardConfig(**_trl_args(args, out, args.rm_lr, args.pairs), max_length=args.seq)
    return _trl_run(RewardTrainer, args.steps, model=model, args=config, train_dataset=dataset,
                    processing_class=AutoTokenizer.from_pretrained(model_dir))


def interleaved(sides: dict[str, Callable[[], Run]], repeats: int) -> dict[str, list[Run]]:
    """`repeats` rounds of one run per side, back to back, the order rotating every round (with two
    sides: flipping), so that a slow spell of the machine hits every side alike."""
    names = list(sides)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for rep in range(repeats):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            runs[name].append(sides[name]())
    return runs


def table_rows(runs: dict[str, list[Run]], other: str, measures: list[tuple[str, str]]) -> list[tuple]:
    """Per measure (label, Run field): the median rate of lmforge and of `other`, and the paired ratio."""
    out = []
    for label, field in measures:
        # seconds per unit of work, so that the paired ratio is lmforge's throughput over the other's
        per = {k: [r.seconds / getattr(r, field) for r in runs[k]] for k in ("lmforge", other)}
        rate = {k: statistics.median(1 / s for s in v) for k, v in per.items()}
        out.append((label, f"{rate['lmforge']:,.0f}", f"{rate[other]:,.0f}",
                    paired_ratio(per["lmforge"], per[other], unit="x")))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--seq", type=int, default=256, help="SFT row length (a row holds seq + 1 tokens)")
    p.add_argument("--rows", type=int, default=8, help="SFT packed rows per step")
    p.add_argument("--pairs", type=int, default=16, help="reward-model pairs per step")
    p.add_argument("--examples", type=int, default=2000, help="task examples: conversations, two pairs each")
    p.add_argument("--steps", type=int, default=15, help="timed optimizer steps per run (after one warm-up step)")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--sft-lr", type=float, default=1e-3)
    p.add_argument("--rm-lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: every core)")
    p.add_argument("--quick", action="store_true", help="2 repeats of 5 steps, 400 examples")
    p.add_argument("--markdown", help="also write the table as Markdown here")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.steps, args.examples = 2, 5, 400
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # transformers' and TRL's advice about settings chosen on purpose here
    import datasets
    import transformers
    import trl
    from datasets import Dataset

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)

    console = Console(width=120)
    console.print(f"{cpu_name()}, {args.threads} torch threads of {os.cpu_count()} cores (load average "
                  f"{os.getloadavg()[0]:.1f} at the start); lmforge {lmforge.__version__}, trl {trl.__version__}, "
                  f"transformers {transformers.__version__}, torch {torch.__version__}")
    info = init_distributed(device="cpu")
    with tempfile.TemporaryDirectory() as work:
        model_dir = Path(work) / "model"
        tok, n_params = build_model_dir(args, model_dir)
        pad_id = tok.pad_id if tok.pad_id is not None else 0

        sft_cfg = SFTSection(init_from=str(model_dir), train_examples=args.examples, seq_len=args.seq)
        convs, _ = sft_conversations(sft_cfg, console)
        encoded = [encode_conversation(tok, c) for c in convs]
        if any(pad_id in e.ids for e in encoded):
            raise RuntimeError("the pad token occurs inside a conversation; the real-token counts would be off")
        sft_data = Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in convs])
        per_row = len(encoded) / SFTLoader(encoded, args.seq, args.rows, args.rows).rows_per_epoch
        padded_batch = round(args.rows * per_row)  # TRL without packing: the conversations in lmforge's rows

        rm_cfg = RMSection(init_from=str(model_dir), loss="bt", train_examples=args.examples, seq_len=args.seq)
        pairs = rm_data(rm_cfg, console)[0]  # the tasks' pairs: task_pairs(training examples, seed)
        pair_ids, dropped = encode_pairs(tok, pairs, rm_cfg)
        if dropped:
            raise RuntimeError(f"{dropped} pairs are longer than {args.seq} tokens; raise --seq")
        pair_data = Dataset.from_list([{"chosen": [*q.prompt, {"role": "assistant", "content": q.chosen}],
                                      "rejected": [*q.prompt, {"role": "assistant", "content": q.rejected}]}
                                     for q in pairs])
        console.print(f"model: {n_params / 1e6:.1f}M params (dim {args.dim}, {args.layers} layers, vocab "
                      f"{tok.vocab_size}), fp32; {args.repeats} repeats x {args.steps} timed steps per side")
        console.print(f"SFT: {len(convs)} conversations ({statistics.mean(len(e.ids) for e in encoded):.0f} tokens, "
                      f"{statistics.mean(sum(e.mask) for e in encoded):.1f} assistant tokens on average); a step: "
                      f"{args.rows} packed rows of {args.seq + 1} tokens ({per_row:.1f} conversations a row), or "
                      f"{padded_batch} padded conversations (TRL packing=False). RM: {len(pairs)} pairs, "
                      f"{args.pairs} a step")

        out = str(Path(work) / "trl")
        sft_runs = interleaved({
            "lmforge": lambda: sft_lmforge(model_dir, encoded, pad_id, args, info),
            "trl packed": lambda: sft_trl(model_dir, sft_data, True, args.rows, args, out),
            "trl padded": lambda: sft_trl(model_dir, sft_data, False, padded_batch, args, out)}, args.repeats)
        rm_runs = interleaved({"lmforge": lambda: rm_lmforge(model_dir, pair_ids, pad_id, args, info),
                               "trl": lambda: rm_trl(model_dir, pair_data, args, out)}, args.repeats)

    for stage, runs, unit in (("SFT", sft_runs, "assistant tokens"), ("RM", rm_runs, "pairs")):
        fed = "; ".join(f"{k} {r[0].real:,} real tokens, {r[0].learned:,} {unit}" for k, r in runs.items())
        console.print(f"{stage}, fed in {args.steps} steps: {fed}")
    rows = table_rows(sft_runs, "trl packed", [("SFT real tokens/s, TRL packing=True", "real"),
                                               ("SFT assistant tokens/s, TRL packing=True", "learned")])
    rows += table_rows(sft_runs, "trl padded", [("SFT real tokens/s, TRL packing=False", "real"),
                                                ("SFT assistant tokens/s, TRL packing=False", "learned")])
    rows += table_rows(rm_runs, "trl", [("RM real tokens/s", "real"), ("RM pairs/s", "learned")])
    print_ratio_table(console, f"alignment training: lmforge vs TRL {trl.__version__} (ratio = lmforge / TRL, with "
                               f"its 95% interval); load average {os.getloadavg()[0]:.1f} at the end", rows, "TRL",
                      args.markdown, "ratio [95% CI]")

if __name__ == "__main__":
    main()
