"""Offline throughput of lmforge's engine vs transformers' batched `generate`, on prompts of mixed lengths.

The work a server does between two idle moments: N prompts of different lengths (uniform in
[--min-prompt, --max-prompt] tokens), each answered greedily, in two workloads:

- "same length": every prompt gets exactly --new-tokens tokens;
- "mixed lengths": prompt i gets n_i tokens, uniform in [--new-tokens / 4, 2 x --new-tokens], as
  replies of different lengths are (a request's max_tokens, or where its model says EOS).

- lmforge: `lmforge.generate.Engine` (continuous batching over the paged KV cache, all prompts
  queued at once; prompts prefilled packed without padding; a request leaves the batch when done);
- transformers: `model.generate` on the same weights (our model exported to the Llama format), the
  prompts left-padded into batches of --hf-batch (all at once by default, its fastest setting on
  this machine), greedy, `min_new_tokens` = `max_new_tokens`: generate has one length per batch,
  so with mixed lengths a batch runs to its longest reply and the rest is cut off afterwards.

Both produce the same greedy tokens (each prompt's first n_i tokens; checked, and printed in the
table). Throughput counts the tokens asked for (sum of n_i) per second of wall time on both sides.
Repeats alternate the sides; the ratio lmforge / transformers is the median of the per-repeat
ratios with its 95% sign-test interval (bench/stats.py).

    .venv/bin/python bench/serve_bench.py              # 64 prompts, the 26M-parameter model of model_bench
    .venv/bin/python bench/serve_bench.py --quick      # 16 prompts, 2 repeats
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_bench import build_models, load_average  # noqa: E402
from stats import paired_ratio  # noqa: E402

from lmforge.generate import Engine, SamplingParams  # noqa: E402
from lmforge.machine import cpu_name  # noqa: E402
from lmforge.model import ModelConfig, num_params  # noqa: E402


def prompts_of_mixed_lengths(n: int, lo: int, hi: int, vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    return [torch.randint(3, vocab, (length,), generator=g).tolist() for length in lengths]


def run_engine(model, prompts, new_tokens: list[int], block_size: int) -> list[list[int]]:
    blocks = sum(-(-(len(p) + n) // block_size) for p, n in zip(prompts, new_tokens))
    engine = Engine(model, kv_blocks=blocks, block_size=block_size, max_batch=len(prompts))
    reqs = [engine.add(p, SamplingParams(max_new_tokens=n)) for p, n in zip(prompts, new_tokens)]
    out = {r.id: [] for r in reqs}
    for ev in engine.run():
        if ev.token_id is not None:
            out[ev.request_id].append(ev.token_id)
    return [out[r.id] for r in reqs]


@torch.inference_mode()
def run_transformers(model, prompts, new_tokens: list[int], batch: int, pad_id: int) -> list[list[int]]:
    out = []
    for start in range(0, len(prompts), batch):
        chunk, wanted = prompts[start:start + batch], new_tokens[start:start + batch]
        width, longest = max(map(len, chunk)), max(wanted)
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=longest,
                             min_new_tokens=longest, eos_token_id=None, pad_token_id=pad_id)
        out += [row[:n] for row, n in zip(gen[:, width:].tolist(), wanted)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--min-prompt", type=int, default=16)
    p.add_argument("--max-prompt", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--hf-batch", type=int, default=0, help="transformers' batch size (0: all prompts at once)")
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: as many as cores)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--quick", action="store_true", help="16 prompts, 2 repeats")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    args = p.parse_args(argv)
    if args.quick:
        args.prompts, args.repeats = 16, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ModelConfig(vocab_size=8192, dim=args.dim, n_layers=args.layers, n_heads=8, n_kv_heads=4,
                      ffn_dim=int(args.dim * 2.75) // 64 * 64, rope_theta=10_000.0, max_seq_len=2048)
    ours, theirs = build_models(cfg, seed=0)
    prompts = prompts_of_mixed_lengths(args.prompts, args.min_prompt, args.max_prompt, cfg.vocab_size)
    hf_batch = args.hf_batch or len(prompts)
    load = load_average()

    g = torch.Generator().manual_seed(1)
    workloads = {"same length": [args.new_tokens] * len(prompts),
                 "mixed lengths": torch.randint(max(1, args.new_tokens // 4), 2 * args.new_tokens + 1,
                                                (len(prompts),), generator=g).tolist()}
    rows = []
    for label, new_tokens in workloads.items():
        sides = {"lmforge": lambda nt=new_tokens: run_engine(ours, prompts, nt, args.block_size),
                 "transformers": lambda nt=new_tokens: run_transformers(theirs, prompts, nt, hf_batch,
                                                                        cfg.pad_token_id)}
        tokens = {name: fn() for name, fn in sides.items()}  # warm-up, and the check
        differing = sum(a != b for a, b in zip(tokens["lmforge"], tokens["transformers"]))
        times: dict[str, list[float]] = {name: [] for name in sides}
        for rep in range(args.repeats):
            for name in (list(sides) if rep % 2 == 0 else list(sides)[::-1]):
                t0 = time.perf_counter()
                sides[name]()
                times[name].append(time.perf_counter() - t0)
        asked = sum(new_tokens)
        tps = {name: asked / statistics.median(ts) for name, ts in times.items()}
        check = "greedy tokens identical" if not differing else f"greedy tokens differ in {differing} prompts"
        rows.append(f"| tokens/s, {label} ({min(new_tokens)}-{max(new_tokens)} per prompt, {asked:,} in all) | "
                    f"{tps['lmforge']:,.0f} | {tps['transformers']:,.0f} | "
                    f"{paired_ratio(times['lmforge'], times['transformers'])} | {check} |")
    lines = [
        f"Machine: {cpu_name()}, {torch.get_num_threads()} threads; torch {torch.__version__}; load average "
        f"{load if load is not None else 'n/a'} at the start.",
        f"Model: InternLM2 dim {cfg.dim}, {cfg.n_layers} layers, {num_params(cfg) / 1e6:.1f}M parameters, fp32. "
        f"{args.prompts} prompts of {args.min_prompt}-{args.max_prompt} tokens "
        f"({sum(map(len, prompts)):,} in all), greedy; {args.repeats} repeats.",
        f"transformers: generate, batches of {hf_batch}, left-padded; lmforge: Engine, all queued at once, "
        f"blocks of {args.block_size} tokens.",
        "",
        "| measure | lmforge | transformers | ratio [95% CI] | check |",
        "|---|---:|---:|---:|---|",
        *rows,
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
