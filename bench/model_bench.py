"""lmforge's InternLM2 vs transformers' LlamaForCausalLM: training step and greedy decode.

The peer a user would pick instead of lmforge's model is transformers. Our model is exported to the
Llama format and loaded with `AutoModelForCausalLM.from_pretrained`, so both sides hold identical
weights and compute the same function. In one process we then time:

- a training step, forward + backward, each library with its own training loss (ours: the head
  fused into the chunked loss, `model(x, targets=y)`; theirs: `labels=`), in tokens/s and as
  MFU: `flops_per_token` (6N + attention) times tokens/s over this machine's fp32 matmul peak,
  measured here (the best of 10 2048^3 `torch.mm`, before and after the training step);
- greedy decoding with a KV cache: `lmforge.generate.generate` (eager, and with the compiled decode
  step, `compile=True`) vs `model.generate(do_sample=False)` (eager, its default dynamic cache; and
  with its static cache and compiled forward, `cache_implementation="static"` + a CompileConfig), at
  batch 1 and batch 8, all producing exactly --new-tokens tokens per row; the generated tokens are
  compared and the table says whether they are identical. The first compiled call of each side,
  which compiles, is timed apart and reported; the timed repeats reuse the compiled code.

Repeats are interleaved (ours, theirs, theirs, ours, ...) and the median of each side is reported,
which spreads a background load over both sides; the output says how noisy the run was (the load
average at the start, the spread of the repeats). ratio = lmforge / transformers, both as
throughput: above 1 means lmforge is faster; it is the median of the per-repeat ratios (the two
calls of a repeat run back to back, so a slow spell of the machine hits both), printed with its 95%
confidence interval, so that "faster" or "at parity" is a statement the run supports, not a reading
of one noisy number.

    .venv/bin/python bench/model_bench.py                    # `make bench`
    .venv/bin/python bench/model_bench.py --quick            # a smaller model, fewer repeats
    .venv/bin/python bench/model_bench.py --markdown out.md  # also write the table as Markdown
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import torch

from lmforge.machine import cpu_name
from stats import paired_ratio
from lmforge.generate import SamplingParams, generate
from lmforge.model import InternLM2, ModelConfig, flops_per_token, num_params, save_model
from lmforge.train.metrics import measured_peak_flops

SIDES = ("lmforge", "transformers")


def n_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> float | None:
    """The 1-minute load average (other processes competing for the cores), where the OS gives it."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def interleaved(fns: dict[str, Callable[[], None]], warmup: int, iters: int,
                before: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Seconds of each timed call of each fn; calls interleaved, the order flipped every repeat.
    `before(name)` runs untimed before each call."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(warmup + iters):
        for name in (names if rep % 2 == 0 else names[::-1]):
            if before is not None:
                before(name)
            t0 = time.perf_counter()
            fns[name]()
            dt = time.perf_counter() - t0
            if rep >= warmup:
                times[name].append(dt)
    return times


def spread(times: list[float]) -> float:
    """(max - min) / median of the timed repeats: how noisy a measurement was."""
    return (max(times) - min(times)) / statistics.median(times)


def build_models(cfg: ModelConfig, seed: int):
    """Our model with random weights, and transformers' Llama loaded from its Llama-format export."""
    from transformers import AutoModelForCausalLM

    ours = InternLM2(cfg)
    ours.init_weights(seed)
    with tempfile.TemporaryDirectory() as d:
        save_model(ours, d, fmt="llama")
        theirs = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    return ours.eval(), theirs.eval()


def bench_train(ours, theirs, cfg: ModelConfig, batch: int, seq: int, warmup: int, iters: int):
    """Seconds per forward + backward of (batch, seq) tokens, per side, and each side's last loss."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=g)
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    losses: dict[str, float] = {}

    def step_ours():
        # our training path: the model fuses the head into the chunked loss (lmforge.model.loss)
        loss, _ = ours(inputs, targets=targets)
        loss.backward()
        losses["lmforge"] = loss.item()

    def step_theirs():
        # transformers' own loss; shift_labels = our targets, so both average the same token losses.
        loss = theirs(input_ids=inputs, labels=targets, shift_labels=targets).loss
        loss.backward()
        losses["transformers"] = loss.item()

    models = dict(zip(SIDES, (ours, theirs)))
    for m in models.values():
        m.train()
    try:
        times = interleaved(dict(zip(SIDES, (step_ours, step_theirs))), warmup, iters,
                            before=lambda name: models[name].zero_grad(set_to_none=True))
    finally:
        for m in models.values():
            m.zero_grad(set_to_none=True)
            m.eval()
    return times, losses


def bench_decode(ours, theirs, cfg: ModelConfig, batch: int, prompt_len: int, new_tokens: int,
                 warmup: int, iters: int, compile: bool = True):
    """Seconds per greedy generate call, per side, whether each side generated the same tokens as
    transformers' eager default, and the seconds of each compiled side's first call (it compiles).

    Sides: "lmforge" (the eager engine) and "transformers" (eager, dynamic cache); with `compile`
    also "lmforge compiled" (compile=True) and "transformers compiled" (its static cache with the
    forward compiled by generate, as transformers documents for fast decoding; `_compile_all_devices`
    lets it compile on CPU). All interleaved in one loop so that they share the background load."""
    g = torch.Generator().manual_seed(2 + batch)
    # Equal-length prompts, so neither side pads; ids >= 3 keep clear of BOS/EOS/PAD.
    prompts = torch.randint(3, cfg.vocab_size, (batch, prompt_len), generator=g)
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0)
    out: dict[str, list[list[int]]] = {}

    def run_ours(name="lmforge", compile=False):
        out[name] = [c.token_ids for c in generate(ours, prompts.tolist(), params, compile=compile)]

    def run_theirs(name="transformers", **static):
        # eos_token_id=None and min_new_tokens: exactly new_tokens per row, as ours (no stop ids).
        seqs = theirs.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                               max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               eos_token_id=None, pad_token_id=cfg.pad_token_id, **static)
        out[name] = seqs[:, prompt_len:].tolist()

    fns = {"lmforge": run_ours, "transformers": run_theirs}
    compile_s: dict[str, float] = {}
    if compile:
        from transformers import CompileConfig

        # fullgraph=False: transformers' dynamic-NTK RoPE has a data-dependent branch (a graph break).
        cc = CompileConfig(mode="default", fullgraph=False)
        cc._compile_all_devices = True
        fns["lmforge compiled"] = lambda: run_ours("lmforge compiled", compile=True)
        fns["transformers compiled"] = lambda: run_theirs("transformers compiled", cache_implementation="static",
                                                          compile_config=cc)
        for name in ("lmforge compiled", "transformers compiled"):
            t0 = time.perf_counter()
            fns[name]()  # compiles for this batch size and cache length, once
            compile_s[name] = time.perf_counter() - t0
    times = interleaved(fns, warmup, iters)
    same = {name: out[name] == out["transformers"] and all(len(r) == new_tokens for r in out[name])
            for name in fns if name != "transformers"}
    return times, same, compile_s


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):  # no "(default: None)" on flags without a value default
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="lmforge InternLM2 vs transformers LlamaForCausalLM: training "
                                "step and greedy decode, side by side (see the module docstring).",
                                formatter_class=_HelpWithDefaults)
    g = p.add_argument_group("model (InternLM2 architecture, fp32)")
    g.add_argument("--dim", type=int, default=512, help="model width")
    g.add_argument("--layers", type=int, default=6, help="decoder blocks")
    g.add_argument("--heads", type=int, default=8, help="query heads")
    g.add_argument("--kv-heads", type=int, default=4, help="key/value heads (GQA)")
    g.add_argument("--ffn-dim", type=int, default=1408, help="SwiGLU hidden size")
    g.add_argument("--vocab", type=int, default=8192, help="vocabulary size")
    g = p.add_argument_group("workload")
    g.add_argument("--batch", type=int, default=4, help="training batch size")
    g.add_argument("--seq", type=int, default=256, help="training sequence length")
    g.add_argument("--prompt-len", type=int, default=32, help="decode prompt length")
    g.add_argument("--new-tokens", type=int, default=128, help="tokens generated per row")
    g.add_argument("--decode-batches", type=int, nargs="*", default=[1, 8],
                   help="decode batch sizes (none: the training rows only)")
    g.add_argument("--no-compile", action="store_true",
                   help="skip the compiled rows (ours: generate(..., compile=True); theirs: static "
                   "cache + torch.compile)")
    g = p.add_argument_group("measurement")
    g.add_argument("--warmup", type=int, default=1, help="untimed repeats per side")
    g.add_argument("--iters", type=int, default=7, help="timed repeats per side; the median is reported")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: the number of cores)")
    g.add_argument("--quick", action="store_true",
                   help="smoke run: dim 256, 4 layers, seq 128, 32 new tokens, 3 repeats")
    p.add_argument("--markdown", metavar="PATH", help="also write the results as Markdown to PATH")
    args = p.parse_args(argv)
    load_before = load_average()  # before our own imports and model building add to it
    if args.quick:
        args.dim, args.layers, args.heads, args.kv_heads, args.ffn_dim = 256, 4, 4, 2, 704
        args.seq, args.new_tokens, args.iters = 128, 32, 3

    import transformers
    from rich.console import Console
    from rich.table import Table

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    console = Console() if sys.stdout.isatty() else Console(width=130)
    threads = args.threads or n_cores()
    torch.set_num_threads(threads)
    cfg = ModelConfig(vocab_size=args.vocab, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                      n_kv_heads=args.kv_heads, ffn_dim=args.ffn_dim, rope_theta=10_000.0,
                      max_seq_len=max(512, args.seq, args.prompt_len + args.new_tokens))

    machine = (f"{cpu_name()}, {n_cores()} cores; torch {torch.__version__} with "
               f"torch.set_num_threads({threads}); transformers {transformers.__version__}; "
               f"Python {platform.python_version()}")
    model_desc = (f"InternLM2 dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads} heads / {cfg.n_kv_heads} "
                  f"kv heads, ffn {cfg.ffn_dim}, vocab {cfg.vocab_size}: {num_params(cfg) / 1e6:.1f}M params, "
                  "fp32, attention: SDPA on both sides")
    console.print(f"machine: {machine}")
    console.print(f"model:   {model_desc}")
    # the best of 10 2048^3 matmuls; again after the training step: a busy core lowers it, the best is the machine's
    peak = measured_peak_flops("cpu", torch.float32, n=2048, iters=10)
    console.print(f"peak:    {peak / 1e9:.1f} GFLOP/s fp32 (best of 10 torch.mm 2048^3, measured now)")
    ours, theirs = build_models(cfg, seed=0)
    if theirs.config._attn_implementation != "sdpa":
        model_desc = model_desc.replace("SDPA on both sides", f"transformers uses {theirs.config._attn_implementation}")

    rows: list[tuple[str, ...]] = []
    noise: list[float] = []

    def add_row(measure, t_ours, t_theirs, work, check, fmt="{:,.0f}"):
        rate = {s: work / statistics.median(t) for s, t in zip(SIDES, (t_ours, t_theirs))}
        rows.append((measure, fmt.format(rate["lmforge"]), fmt.format(rate["transformers"]),
                     paired_ratio(t_ours, t_theirs), check))

    console.print(f"training step: batch {args.batch} x seq {args.seq}, forward + backward ...")
    times, losses = bench_train(ours, theirs, cfg, args.batch, args.seq, args.warmup, args.iters)
    noise += [spread(t) for t in times.values()]
    tokens = args.batch * args.seq
    same_loss = abs(losses["lmforge"] - losses["transformers"]) <= 1e-5 * abs(losses["transformers"])
    add_row(f"train fwd+bwd tokens/s (batch {args.batch} x {args.seq})", times["lmforge"], times["transformers"],
            tokens, f"same loss ({losses['lmforge']:.4f})" if same_loss
            else f"LOSSES DIFFER: {losses['lmforge']:.6f} vs {losses['transformers']:.6f}")
    fpt = flops_per_token(cfg, args.seq)
    peak = max(peak, measured_peak_flops("cpu", torch.float32, n=2048, iters=10))
    add_row("train MFU, % of measured fp32 peak", times["lmforge"], times["transformers"],
            tokens * fpt / peak * 100, f"{fpt / 1e6:.0f} MFLOP/token", fmt="{:.1f}%")

    for b in args.decode_batches:
        console.print(f"greedy decode: batch {b}, {args.prompt_len}-token prompts + {args.new_tokens} new tokens ...")
        times, same, compile_s = bench_decode(ours, theirs, cfg, b, args.prompt_len, args.new_tokens,
                                              args.warmup, args.iters, compile=not args.no_compile)
        noise += [spread(t) for t in times.values()]
        work, shape = b * args.new_tokens, f"(batch {b}, {args.prompt_len} + {args.new_tokens})"

        def check(*names):
            ok = all(same[n] for n in names if n in same)
            first = [f"{'ours' if n.startswith('lmforge') else 'theirs'} {compile_s[n]:.1f} s"
                     for n in names if n in compile_s]
            verdict = "greedy tokens identical" if ok else "GREEDY TOKENS DIFFER"
            return verdict + (f"; first call (compiles): {', '.join(first)}" if first else "")

        add_row(f"decode tokens/s {shape}", times["lmforge"], times["transformers"], work, check("lmforge"))
        if compile_s:
            add_row(f"decode, compiled step tokens/s {shape}", times["lmforge compiled"], times["transformers"],
                    work, check("lmforge compiled"))
            add_row(f"decode, both compiled (theirs: static cache + torch.compile) tokens/s {shape}",
                    times["lmforge compiled"], times["transformers compiled"], work,
                    check("lmforge compiled", "transformers compiled"))

    headers = ("measure", "lmforge", "transformers", "ratio", "check")
    table = Table(title="lmforge InternLM2 vs transformers LlamaForCausalLM, same weights, one process")
    for h in headers:
        table.add_column(h, justify="right" if h in ("lmforge", "transformers", "ratio") else "left")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    notes = [f"tokens/s: median of {args.iters} timed repeats per side, interleaved, after {args.warmup} warmup. "
             "ratio = lmforge / transformers throughput (above 1: lmforge faster), the median over the repeats of "
             "the ratio of that repeat's two back-to-back calls, with its 95% confidence interval in brackets "
             "(the distribution-free sign-test interval for a median; from 6 repeats on). Decode tokens/s = generated tokens over the "
             "whole generate() call, prefill included."]
    worst = max(noise)
    load = f"load average {load_before:.2f} at the start; " if load_before is not None else ""
    notes.append(f"Noise: {load}the widest spread of one side's repeats was {worst:.0%} of its median.")
    if worst > 0.25 or (load_before or 0) > 0.5:
        notes.append("NOISY run: other processes were competing for the cores. Interleaving spreads a slowdown over "
                     "both sides, but a thread stalled by a busy core makes it uneven; rerun on a quiet machine.")
    for n in notes:
        console.print(n)
    if args.markdown:
        md = [f"Machine: {machine}.", "", f"Model: {model_desc}.", "",
              f"Measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s (best of 10 torch.mm 2048^3, before and "
              "after the training step).", "",
              "| " + " | ".join(headers) + " |", "|---|---:|---:|---:|---|",
              *("| " + " | ".join(r) + " |" for r in rows), "", *notes, ""]
        with open(args.markdown, "w") as f:
            f.write("\n".join(md))
        console.print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
