"""Online RL throughput: lmforge's rollouts and GRPO step against transformers' `generate` and TRL's
GRPOTrainer, on the same model, the same prompts and the same batch, measured side by side in one
run and printed as ratios (issue goal: >= 2x on CPU, from the engine).

The model: a tokenizer trained on English and the tasks' text and a random InternLM2 (dim 256,
4 layers by default) saved in Llama format, which lmforge loads as itself and transformers as
LlamaForCausalLM; or `--model DIR`, an existing lmforge / HF InternLM2 directory (exported here to
Llama format for transformers). The prompts: one example of each built-in task (`--prompts`, eight
by default: the eight tasks), rendered with the chat template and its generation prompt; both
sides get the same token ids (checked). Each prompt is answered `--group` (8) times: one step is
8 prompts x 8 answers = 64 completions of at most `--max-new` tokens, sampled at `--temperature`,
top-p 1, no top-k.

End of turn: by default both sides ignore it and generate exactly `--max-new` tokens per answer,
so that both do the same work (a random model stops at a random time): lmforge's engine is given
no stop token (the tokenizer's stop ids replaced by one that never occurs), transformers'
`generate` gets `min_new_tokens = max_new_tokens` (its end-of-sequence logits masked). With
`--stop`, both stop at the chat format's end of turn as they normally would; the tokens are then
counted as generated (up to and including the end of turn; never the padding transformers' batch
adds behind it).

(a) Rollout: lmforge's `rollout()` (lmforge.align.rollout, what `lmforge rl` calls) on the
    continuous-batching engine, a fresh engine each time, sized as `rl()` sizes it, vs
    `model.generate` as TRL's GRPOTrainer calls it without vLLM: the prompts repeated `group`
    times and left-padded into one batch, `do_sample=True`, TRL's GenerationConfig (its defaults:
    temperature, top_p 1, top_k 0), KV cache on. Generated tokens/s.
(b) A whole GRPO step: lmforge's `rl()` step (rollout, checker rewards, then `policy_batches`, as
    `rl()` calls it: group-standardised advantages, the batch (`rl_batch`; one update per rollout, so
    the sampling policy's log-probs come from the loss's own forward, as TRL's do), one
    `trainer.step` on `PolicyLoss`,
    `weights_updated`), vs TRL's GRPOTrainer with one generation batch per optimizer step
    (per_device_train_batch_size = generation_batch_size = prompts x group, num_generations =
    group), loss_type "bnpo" (lmforge's "token" aggregate), beta 0 (no reference model, as
    lmforge's default kl = 0), epsilon 0.2, the rewards from the same checkers, `use_vllm=False`.
    Both: fp32 on the CPU, no gradient checkpointing, AdamW (betas 0.9/0.95, eps 1e-8, no weight
    decay, constant lr), clipping at 1.0, one micro-batch of all 64 rows. Each run builds its
    trainer afresh (untimed), runs one warm-up step, then times `--steps` steps: lmforge each step
    on its own clock, TRL between its `on_step_end` callbacks (its generation, rewards, loss,
    optimizer step and callbacks; `train()`'s setup is not timed). lmforge's engine is kept for the
    run, as `rl()` keeps it; the prompt tokens its prefix cache served are reported (0 expected:
    `weights_updated` empties the cache, and a step admits all its prompts at once).

TRL 1.16 ships no PPOTrainer (neither in `trl` nor in `trl.experimental`), so there is no PPO
peer; `--ppo` times lmforge's PPO step (`algorithm = "ppo"`: critic values, GAE, a critic step and
a policy step) alone, for reference.

The sides take turns, the order flipping every repeat; rates are medians over repeats, the ratio
(above 1: lmforge faster) is the median of the per-repeat ratios with its 95% interval
(bench/stats.py; 6 repeats or more give one).

    python bench/rl_bench.py [--quick] [--threads N] [--model DIR] [--markdown out.md] [--out out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from align_bench import build_model_dir  # noqa: E402
from stats import median_ci, paired_ratio, print_ratio_table  # noqa: E402

import lmforge  # noqa: E402
from lmforge.align.config import RLSection  # noqa: E402
from lmforge.align.losses import PolicyLoss  # noqa: E402
from lmforge.align.rl import build_critic_trainer, checker_rewards, policy_batches  # noqa: E402
from lmforge.align.rollout import rollout  # noqa: E402
from lmforge.align.tasks import check, make_examples  # noqa: E402
from lmforge.align.rollout_workers import engine_for  # noqa: E402
from lmforge.machine import cpu_name  # noqa: E402
from lmforge.model import load_model, save_model  # noqa: E402
from lmforge.model.hf import llama_refusal  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.train.parallel import init_distributed  # noqa: E402
from lmforge.train.trainer import Trainer  # noqa: E402

NEVER = -1  # a stop id no sampled token can equal: the engine then generates max_new_tokens every time
MALFORMED = RLSection.malformed_reward
PREFIX_HITS: list[int] = []  # per lmforge GRPO run: prompt tokens the engine's prefix cache served


class NoStop:
    """The tokenizer, with a stop id that never occurs (`--stop` off: both sides generate the same
    number of tokens)."""

    def __init__(self, tok):
        self._tok = tok
        self.stop_ids = (NEVER,)

    def __getattr__(self, name):
        return getattr(self._tok, name)


# ---- the shared setup --------------------------------------------------------------------------

def task_prompts(n: int, seed: int) -> list:
    """`n` training examples, the tasks taking turns (the eight tasks once each by default)."""
    return make_examples(n, seed, "train")


def rl_section(model_dir: Path, args, **kw) -> RLSection:
    return RLSection(init_from=str(model_dir), global_batch=args.prompts, group=args.group,
                     micro_batch=args.prompts * args.group, max_new_tokens=args.max_new,
                     temperature=args.temperature, top_p=1.0, lr=args.lr, schedule="constant", warmup_steps=0,
                     kl=0.0, clip=0.2, aggregate="token", tensorboard=False,
                     steps=args.steps + 1, seq_len=args.seq, **kw)


def make_engine(model, tok, cfg: RLSection):
    """The engine as `rl()` builds it (its colocated rollouts)."""
    return engine_for(model, tok, cfg.global_batch * cfg.group)


def count_hf(completions: torch.Tensor, eos_ids: list[int]) -> int:
    """Tokens generated per row up to and including the first end of sequence (TRL's completion mask)."""
    is_eos = torch.isin(completions, torch.tensor(eos_ids))
    n = completions.shape[1]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full((completions.shape[0],), n))
    return int(first.sum())


# ---- (a) rollout -------------------------------------------------------------------------------

def rollout_lmforge(model, tok, prompt_ids, cfg: RLSection, seed: int) -> tuple[float, int]:
    engine = make_engine(model, tok, cfg)
    t0 = time.perf_counter()
    rolls = rollout(engine, tok, [], cfg.group, cfg.max_new_tokens, cfg.temperature, cfg.top_p, seed=seed,
                    prompt_ids=prompt_ids)
    return time.perf_counter() - t0, sum(len(r.completion) for r in rolls)


def hf_generation_config(hf_tok, args, eos_ids: list[int]):
    """TRL GRPOTrainer's GenerationConfig without vLLM (grpo_trainer.py), at TRL's defaults."""
    from transformers import GenerationConfig

    kw = dict(max_new_tokens=args.max_new, do_sample=True, pad_token_id=hf_tok.pad_token_id,
              bos_token_id=hf_tok.bos_token_id, eos_token_id=eos_ids, temperature=args.temperature, top_p=1.0,
              top_k=0, min_p=None, repetition_penalty=1.0, cache_implementation=None)
    if not args.stop:
        kw["min_new_tokens"] = args.max_new
    return GenerationConfig(**kw, disable_compile=True)


def rollout_hf(hf, gen_cfg, prompt_ids, group: int, pad: int, eos_ids: list[int]) -> tuple[float, int]:
    rows = [torch.tensor(p) for p in prompt_ids for _ in range(group)]  # TRL's sampler repeats each prompt
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):  # left padding, as TRL pads
        ids[i, width - len(r):], mask[i, width - len(r):] = r, 1
    t0 = time.perf_counter()
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
    seconds = time.perf_counter() - t0
    return seconds, count_hf(out[:, width:], eos_ids)


# ---- (b) a GRPO step ---------------------------------------------------------------------------

def grpo_lmforge(model_dir: Path, tok, examples, prompt_ids, args, info, ppo: bool = False) -> list[float]:
    """One warm-up step and `args.steps` timed steps of `rl()`'s step body; the timed steps' seconds."""
    cfg = rl_section(model_dir, args, **({"algorithm": "ppo", "critic_warmup": 0} if ppo else {}))
    policy = load_model(model_dir).float()
    trainer = Trainer(policy, cfg.train_section(), info)
    model = trainer.model
    loss_fn = PolicyLoss(cfg.clip, 0.0 if ppo else cfg.kl, cfg.aggregate, cfg.kl_weighted)
    critic_trainer = build_critic_trainer(cfg, info) if ppo else None
    pad = tok.pad_id or 0
    engine = make_engine(model, tok, cfg)  # one for the run, as `rl()` keeps one (colocated rollouts)
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        model.eval()
        rolls = rollout(engine, tok, [], cfg.group, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                        seed=cfg.seed * 1_000_003 + step * len(prompt_ids) * cfg.group, prompt_ids=prompt_ids)
        _, rewards = checker_rewards(examples, [r.text for r in rolls], cfg.group, cfg.malformed_reward)
        batches, _ = policy_batches(cfg, rolls, rewards, model, None, pad, critic_trainer)  # `rl()`'s step
        model.train()
        trainer.step(batches, loss_fn, cfg.lr)
        engine.weights_updated()
        times.append(time.perf_counter() - t0)
    trainer.close()
    if critic_trainer is not None:
        critic_trainer.close()
    # the same prompts every step: prompt tokens served from the prefix cache (0 expected, since
    # `weights_updated` empties it and a step admits all its prompts at once) are reported
    PREFIX_HITS.append(engine.stats.prefix_hit_tokens)
    return times[1:]


def grpo_trl(llama_dir: Path, dataset, examples, args, out: str) -> list[float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_, **__):
            ends.append(time.perf_counter())

    def reward(completions, idx, **_):
        value = {"correct": 1.0, "wrong": 0.0, "malformed": MALFORMED}
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [value[check(examples[i], t.strip())] for i, t in zip(idx, texts)]

    batch = args.prompts * args.group
    config = GRPOConfig(
        output_dir=out, max_steps=args.steps + 1, per_device_train_batch_size=batch, generation_batch_size=batch,
        num_generations=args.group, max_completion_length=args.max_new, temperature=args.temperature, top_p=1.0,
        top_k=0, beta=0.0, loss_type="bnpo", epsilon=0.2, scale_rewards="group", num_iterations=1,
        generation_kwargs=None if args.stop else {"min_new_tokens": args.max_new},
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, max_grad_norm=1.0, gradient_accumulation_steps=1,
        gradient_checkpointing=False, use_vllm=False, use_cpu=True, bf16=False, report_to="none",
        logging_steps=10**6, save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=0,
        log_completions=False)
    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32, attn_implementation="sdpa")
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=dataset,
                          processing_class=AutoTokenizer.from_pretrained(llama_dir), callbacks=[StepClock()])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if len(ends) != args.steps + 1:
        raise RuntimeError(f"TRL ran {len(ends)} steps, expected {args.steps + 1}")
    return [b - a for a, b in zip(ends, ends[1:])]


# ---- the run -----------------------------------------------------------------------------------

def interleave(a, b, repeats: int) -> tuple[list, list]:
    """`repeats` rounds of a() and b(), back to back, the order flipping every round."""
    ra, rb = [], []
    for rep in range(repeats):
        if rep % 2 == 0:
            ra.append(a(rep))
            rb.append(b(rep))
        else:
            rb.append(b(rep))
            ra.append(a(rep))
    return ra, rb


def ci_text(values: list[float], fmt: str) -> str:
    ci = median_ci(values)
    return f"{statistics.median(values):{fmt}}" + (f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="an existing model directory (lmforge / HF InternLM2 + tokenizer); "
                                   "default: a fresh random model of --dim / --layers / --vocab")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--seq", type=int, default=256, help="the fresh model's context (prompt + answer must fit)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step (global batch)")
    p.add_argument("--group", type=int, default=8, help="answers per prompt")
    p.add_argument("--max-new", type=int, default=32, help="tokens per answer (at most, with --stop)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--stop", action="store_true", help="stop at the end of turn (default: both sides ignore it)")
    p.add_argument("--rollout-repeats", type=int, default=8)
    p.add_argument("--repeats", type=int, default=6, help="GRPO runs per side")
    p.add_argument("--steps", type=int, default=2, help="timed GRPO steps per run (after one warm-up step)")
    p.add_argument("--ppo", action="store_true", help="also time lmforge's PPO step (no TRL peer in TRL 1.x)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads (default: every core; 1 on a shared machine)")
    p.add_argument("--quick", action="store_true", help="2 rollout repeats, 2 GRPO repeats of 2 steps")
    p.add_argument("--markdown", help="also write the table as Markdown here")
    p.add_argument("--out", help="write the measurements as JSON here")
    args = p.parse_args()
    if args.quick:
        args.rollout_repeats, args.repeats, args.steps = 2, 2, 2
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import datasets
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)
    console = Console(width=120)
    load0 = os.getloadavg()[0]
    console.print(f"{cpu_name()}, {args.threads} torch threads of {os.cpu_count()} cores (load average "
                  f"{load0:.1f} at the start); lmforge {lmforge.__version__}, trl {trl.__version__}, "
                  f"transformers {transformers.__version__}, torch {torch.__version__}")
    info = init_distributed(device="cpu")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        llama_dir = Path(work) / "model"
        if args.model:
            lm = load_model(args.model)
            if why := llama_refusal(lm.cfg):  # TRL runs transformers' Llama
                raise SystemExit(f"--model {args.model}: TRL cannot run it ({why.split(';')[0]}); give a model "
                                 "without smeared keys or QK-norm")
            save_model(lm, llama_dir, fmt="llama")
            Tokenizer.load(args.model).save(llama_dir)
            n_params, shape = lm.num_params(), f"dim {lm.cfg.dim}, {lm.cfg.n_layers} layers, vocab {lm.cfg.vocab_size}"
        else:
            tok, n_params = build_model_dir(args, llama_dir)
            shape = f"dim {args.dim}, {args.layers} layers, vocab {tok.vocab_size}"
        tok = Tokenizer.load(llama_dir)
        side_tok = tok if args.stop else NoStop(tok)
        hf_tok = AutoTokenizer.from_pretrained(llama_dir)
        examples = task_prompts(args.prompts, seed=0)
        messages = [ex.messages()[:-1] for ex in examples]
        prompt_ids = [tok.encode_chat(m, add_generation_prompt=True) for m in messages]
        theirs = [hf_tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True) for m in messages]
        theirs = [t["input_ids"] if isinstance(t, dict) or hasattr(t, "keys") else t for t in theirs]
        same_ids = [list(a) == list(b) for a, b in zip(prompt_ids, theirs)]
        console.print(f"model: {n_params / 1e6:.1f}M params ({shape}), fp32; {args.prompts} prompts "
                      f"({', '.join(e.task for e in examples)}; {min(map(len, prompt_ids))}-"
                      f"{max(map(len, prompt_ids))} tokens) x {args.group} answers x {args.max_new} new tokens "
                      f"({'stopping at the end of turn' if args.stop else 'end of turn ignored on both sides'}); "
                      f"TRL's chat template gives the same prompt ids: {all(same_ids)}")
        eos_ids = list(dict.fromkeys([hf_tok.eos_token_id, *tok.stop_ids]))
        pad = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0

        # (a) rollout
        cfg = rl_section(llama_dir, args)
        ours_model = load_model(llama_dir).float().eval()
        hf = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
        gen_cfg = hf_generation_config(hf_tok, args, eos_ids)
        rollout_lmforge(ours_model, side_tok, prompt_ids, cfg, seed=10**6)  # warm-up, both sides
        rollout_hf(hf, gen_cfg, prompt_ids, args.group, pad, eos_ids)
        ro, rh = interleave(lambda r: rollout_lmforge(ours_model, side_tok, prompt_ids, cfg, seed=r * 1000),
                            lambda r: (torch.manual_seed(r), rollout_hf(hf, gen_cfg, prompt_ids, args.group, pad,
                                                                        eos_ids))[1],
                            args.rollout_repeats)
        console.print(f"rollout, tokens generated per repeat: lmforge {[n for _, n in ro]}, "
                      f"transformers {[n for _, n in rh]}")

        # (b) GRPO step
        dataset = Dataset.from_list([{"prompt": m, "idx": i} for i, m in enumerate(messages)])
        out = str(Path(work) / "trl")
        go, gt = interleave(lambda r: grpo_lmforge(llama_dir, side_tok, examples, prompt_ids, args, info),
                            lambda r: grpo_trl(llama_dir, dataset, examples, args, out), args.repeats)
        console.print(f"lmforge GRPO runs: prompt tokens served by the prefix cache {PREFIX_HITS}")
        ppo_times = grpo_lmforge(llama_dir, side_tok, examples, prompt_ids, args, info, ppo=True) if args.ppo else None

    # seconds per token for the rollout ratio (theirs / ours: above 1, lmforge faster)
    ro_spt, rh_spt = [s / n for s, n in ro], [s / n for s, n in rh]
    go_step, gt_step = [statistics.median(t) for t in go], [statistics.median(t) for t in gt]
    rows = [
        (f"rollout tokens/s ({args.prompts}x{args.group} answers, {args.max_new} tokens)",
         f"{statistics.median(1 / s for s in ro_spt):,.0f}", f"{statistics.median(1 / s for s in rh_spt):,.0f}",
         paired_ratio(ro_spt, rh_spt, unit="x")),
        (f"GRPO step s ({args.prompts}x{args.group}, median of {args.steps} steps x {args.repeats} runs)",
         ci_text([t for ts in go for t in ts], ".2f"), ci_text([t for ts in gt for t in ts], ".2f"),
         paired_ratio(go_step, gt_step, unit="x")),
    ]
    console.print(f"best of the repeats (the least disturbed by other jobs): rollout tokens/s lmforge "
                  f"{1 / min(ro_spt):,.0f}, transformers {1 / min(rh_spt):,.0f}; GRPO step s lmforge "
                  f"{min(t for ts in go for t in ts):.2f}, TRL {min(t for ts in gt for t in ts):.2f}")
    if ppo_times:
        rows.append((f"PPO step s (lmforge only; TRL {trl.__version__} has no PPOTrainer)",
                     ci_text(ppo_times, ".2f"), "n/a", "n/a"))
    print_ratio_table(console, f"online RL: lmforge vs transformers generate / TRL {trl.__version__} GRPOTrainer "
                               f"(ratio = lmforge / TRL throughput, with its 95% interval); load average "
                               f"{os.getloadavg()[0]:.1f} at the end, {time.perf_counter() - began:.0f} s in all",
                      rows, "TRL / HF", args.markdown, "ratio [95% CI]")
    if args.out:
        result = {"args": vars(args), "versions": {"lmforge": lmforge.__version__, "trl": trl.__version__,
                                                  "transformers": transformers.__version__, "torch": torch.__version__},
                  "cpu": cpu_name(), "threads": args.threads, "load_average": [load0, os.getloadavg()[0]],
                  "params": n_params, "prompt_tokens": [len(p) for p in prompt_ids], "same_prompt_ids": all(same_ids),
                  "rollout": {"lmforge": [{"seconds": s, "tokens": n} for s, n in ro],
                              "hf_generate": [{"seconds": s, "tokens": n} for s, n in rh]},
                  "grpo_step_seconds": {"lmforge": go, "trl": gt},
                  "lmforge_prefix_hit_tokens": PREFIX_HITS, "ppo_step_seconds": ppo_times,
                  "table": [dict(zip(("measure", "lmforge", "trl_hf", "ratio"), r)) for r in rows]}
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
