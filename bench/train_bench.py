"""Training benchmarks (issue #4): measured side by side in one run, printed as ratios.

(a) A full train step (forward, backward, AdamW step) of lmforge's InternLM2 vs transformers'
    LlamaForCausalLM + torch.optim.AdamW with identical weights, batch and length: tokens/s and
    MFU against the measured matmul peak. Repeats alternate between the two (the order flipped
    every repeat) so that machine noise hits both alike; tokens/s are medians, the ratio is the
    median of the per-repeat ratios with its 95% confidence interval (bench/stats.py).
(b) Peak memory of one train step with AdamW vs AdaLomo (fused into backward), each in a fresh
    subprocess: peak RSS growth on CPU (CUDA: max_memory_allocated), and optimizer-state bytes.
(c) Peak memory of one forward + backward with InternLM2's 92,544-token vocabulary: lmforge's
    training loss (the head fused into the chunked loss, `model(x, targets=y)`) vs transformers'
    (`labels=`, which materialises the logits), same weights, each in a fresh subprocess.

    python bench/train_bench.py [--quick] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from rich.console import Console

from lmforge.machine import cpu_name
from memory import current_rss, peak_rss, reset_peak_rss
from stats import paired_ratio, print_ratio_table
from lmforge.model import InternLM2, ModelConfig, flops_per_token, save_model
from lmforge.train.metrics import measured_peak_flops
from lmforge.train.optim import build_optimizer


def _cfg(args) -> ModelConfig:
    return ModelConfig(vocab_size=args.vocab, dim=args.dim, n_layers=args.layers, n_heads=args.dim // 64,
                       n_kv_heads=max(1, args.dim // 256), ffn_dim=int(args.dim * 8 / 3) // 64 * 64,
                       rope_theta=10000.0, rope_scaling="none", max_seq_len=args.seq)


def speed(args, console: Console) -> list[tuple]:
    import transformers

    cfg = _cfg(args)
    ours = InternLM2(cfg)
    ours.init_weights(0)
    with tempfile.TemporaryDirectory() as d:
        save_model(ours, d, fmt="llama")
        theirs = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                                   attn_implementation="sdpa")
    ours.train()
    theirs.train()
    opt_ours = build_optimizer(ours, "adamw", 1e-4)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), generator=torch.Generator().manual_seed(0))
    inputs, targets = x[:, :-1], x[:, 1:]

    def step_ours():
        loss, _ = ours(inputs, targets=targets)  # as the trainer: head fused into the chunked loss
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_theirs():
        logits = theirs(inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)

    for fn in (step_ours, step_theirs):  # warm-up
        fn()
    times = {"ours": [], "theirs": []}
    steps = (("ours", step_ours), ("theirs", step_theirs))
    for rep in range(args.repeats):
        for name, fn in steps if rep % 2 == 0 else steps[::-1]:  # the order flips every repeat
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    tokens = args.batch * args.seq
    peak = measured_peak_flops("cpu", torch.float32)
    fpt = flops_per_token(cfg, args.seq)
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    ratio = paired_ratio(times["ours"], times["theirs"], unit="x")  # with its 95% interval (bench/stats.py)
    console.print(f"model: {ours.num_params() / 1e6:.1f}M params, batch {args.batch} x {args.seq}, fp32; "
                  f"measured fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    return [("train step tokens/s (AdamW)", f"{tps['ours']:,.0f}", f"{tps['theirs']:,.0f}", ratio),
            ("train step MFU", f"{100 * fpt * tps['ours'] / peak:.1f}%", f"{100 * fpt * tps['theirs'] / peak:.1f}%",
             ratio)]


def memory_child(optimizer: str, args) -> dict:
    """One train step in this (fresh) process; peak memory growth and optimizer-state bytes."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    cfg = _cfg(args)
    model = InternLM2(cfg).to(device)
    model.init_weights(0)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # Peak of the train steps alone: reset the high-water mark after the model is built (building
    # it has a transient of its own, the same for both optimizers), then count the weights once.
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() - param_bytes
    else:
        reset_peak_rss()
        base = current_rss() - param_bytes
    opt = build_optimizer(model, optimizer, 1e-3)
    fused = optimizer == "adalomo"
    if fused:
        opt.attach()
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), device=device)
    for _ in range(2):  # the second step has every optimizer state allocated
        loss, _ = model(x[:, :-1], targets=x[:, 1:])
        if fused:
            opt.begin_fused_step()
            loss.backward()
            opt.end_fused_step()
        else:
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    peak = (torch.cuda.max_memory_allocated() if cuda else peak_rss()) - base
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    return {"peak": peak, "state": state, "params": sum(p.numel() for p in model.parameters())}


def loss_memory_child(side: str, args) -> dict:
    """One forward + backward of a (1, loss_seq) row at the loss_vocab vocabulary in this (fresh)
    process: peak memory growth over the built model (weights resident, gradients not yet)."""
    cfg = ModelConfig(vocab_size=args.loss_vocab, dim=512, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=1408,
                      rope_theta=10000.0, rope_scaling="none", max_seq_len=args.loss_seq)
    model = InternLM2(cfg)
    model.init_weights(0)
    if side == "transformers":
        import transformers

        with tempfile.TemporaryDirectory() as d:
            save_model(model, d, fmt="llama")
            del model
            model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                                      attn_implementation="sdpa")
    model.train()
    x = torch.randint(0, cfg.vocab_size, (1, args.loss_seq + 1), generator=torch.Generator().manual_seed(0))
    inputs, targets = x[:, :-1], x[:, 1:]
    reset_peak_rss()
    base = current_rss()
    if side == "transformers":
        loss = model(input_ids=inputs, labels=targets, shift_labels=targets).loss
    else:
        loss, _ = model(inputs, targets=targets)
    loss.backward()
    return {"peak": peak_rss() - base, "loss": loss.item(), "params": sum(p.numel() for p in model.parameters())}


def _in_fresh_processes(flag: str, names: tuple[str, ...]) -> dict[str, dict]:
    """Run this script with `flag NAME` for each name, each in a new process; their JSON results."""
    out = {}
    for name in names:
        cmd = [sys.executable, __file__, flag, name, *sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def loss_memory(args, console: Console) -> list[tuple]:
    out = _in_fresh_processes("--loss-memory-child", ("lmforge", "transformers"))
    a, b = out["lmforge"], out["transformers"]
    assert abs(a["loss"] - b["loss"]) < 1e-4, f"the two losses differ: {a['loss']} vs {b['loss']}"
    logits_mb = args.loss_seq * args.loss_vocab * 4 / 2**20
    console.print(f"loss memory model: {a['params'] / 1e6:.1f}M params, vocab {args.loss_vocab:,}, batch 1 x "
                  f"{args.loss_seq}, fp32 (the logits alone: {logits_mb:,.0f} MB); losses {a['loss']:.4f} / {b['loss']:.4f}")
    return [(f"peak memory of fwd+bwd, vocab {args.loss_vocab:,}, 1 x {args.loss_seq} (MB)",
             f"{a['peak'] / 2**20:,.0f}", f"{b['peak'] / 2**20:,.0f} (transformers)", f"{a['peak'] / b['peak']:.2f}x")]


def memory(args, console: Console) -> list[tuple]:
    out = _in_fresh_processes("--memory-child", ("adamw", "adalomo"))
    a, b = out["adamw"], out["adalomo"]
    console.print(f"memory model: {a['params'] / 1e6:.1f}M params, batch 1 x 128, fp32")
    return [("peak memory of a train step (MB)", f"{b['peak'] / 2**20:,.0f} (AdaLomo)", f"{a['peak'] / 2**20:,.0f} (AdamW)",
             f"{b['peak'] / a['peak']:.2f}x"),
            ("optimizer state (MB)", f"{b['state'] / 2**20:,.2f} (AdaLomo)", f"{a['state'] / 2**20:,.2f} (AdamW)",
             f"{b['state'] / a['state']:.4f}x")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--mem-dim", type=int, default=1024, help="model width for the memory comparison")
    p.add_argument("--loss-vocab", type=int, default=92_544, help="vocabulary for the loss-memory comparison")
    p.add_argument("--loss-seq", type=int, default=2048, help="tokens for the loss-memory comparison")
    p.add_argument("--quick", action="store_true", help="small sizes, 2 repeats")
    p.add_argument("--markdown", help="also write the table as Markdown here")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--loss-memory-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.dim, args.layers, args.repeats, args.mem_dim, args.loss_seq = 256, 4, 2, 768, 1024
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    if args.loss_memory_child:
        print(json.dumps(loss_memory_child(args.loss_memory_child, args)))
        return
    if args.memory_child:
        args.dim, args.batch, args.seq = args.mem_dim, 1, 128
        print(json.dumps(memory_child(args.memory_child, args)))
        return
    console = Console()
    import transformers

    console.print(f"{cpu_name()}, {threads} threads; torch {torch.__version__}, transformers {transformers.__version__}")
    rows = speed(args, console) + memory(args, console) + loss_memory(args, console)
    print_ratio_table(console, "training: lmforge vs the alternative (ratio = lmforge / other; memory: lower is better)",
                      rows, markdown=args.markdown)

if __name__ == "__main__":
    main()
