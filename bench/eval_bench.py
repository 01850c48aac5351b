"""Log-likelihood evaluation speed: lmforge's scorer vs lm-evaluation-harness's HF backend.

The same model is exported to the Hugging Face Llama format; lm-eval's `HFLM` loads that directory
(transformers' LlamaForCausalLM) and lmforge loads it through its interop. Both then score the
same (context, continuation) requests - the rendered items of MMLU (5-shot) and HellaSwag
(0-shot) - from text to per-request log-likelihoods, tokenisation included. We report items
(questions) per second, the ratio ours / theirs (above 1: lmforge is faster) by wall-clock and by
CPU time of the process (steadier on a shared machine, where a descheduled OpenMP thread stalls
the other), and the largest log-likelihood difference, as a check that both computed the same. After a warm-up, runs
are interleaved (ours, theirs, theirs, ours, ...) so that a background load on a shared machine
slows both sides alike; the ratios are the medians of the per-run ratios with their 95% interval
(bench/stats.py, from 6 runs on); `--repeats 1` is a single run.

Both sides get the same requests, dtype (fp32), device and torch threads. lm-eval's batch size is
the fastest for each task on this machine (`--batch-size best`, the default: the best of two timed
runs at each of 1, 2, 4, 8, 16, 32, 64, before the measured runs). Its own `auto` would pick the
largest batch that fits, 64 on a CPU, after five probing forward passes per call, which only costs
time here. lmforge packs requests into rows of trie nodes with its defaults. The settings of both
sides are printed under the table.

    .venv/bin/python bench/eval_bench.py [--items 40] [--repeats 7] [--threads 1] [--preset tiny] [--batch-size best]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from stats import paired_ratio

from lmforge.corpora import english_text
from lmforge.eval.lm import load_lm
from lmforge.eval.loglikelihood import auto_row_tokens
from lmforge.eval.tasks import hellaswag, mmlu
from lmforge.machine import cpu_name
from lmforge.model import InternLM2, num_params, preset, save_model
from lmforge.tokenizer import train_bpe


def requests_for(task, limit: int) -> tuple[int, list[tuple[str, str]]]:
    examples = task.examples(limit)
    return len(examples), [(ex.prompt, task.target_delimiter + c) for ex in examples for c in ex.choices]


def timed(fn) -> tuple[float, float, list]:
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def time_ours(lm, requests) -> tuple[float, float, list[float]]:
    wall, cpu, out = timed(lambda: lm.loglikelihood(requests))
    return wall, cpu, [ll for ll, _ in out]


def time_lm_eval(hflm, requests) -> tuple[float, float, list[float]]:
    from lm_eval.api.instance import Instance

    instances = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)]
    wall, cpu, out = timed(lambda: hflm.loglikelihood(instances, disable_tqdm=True))
    return wall, cpu, [ll for ll, _ in out]


BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def fastest_batch_size(hflms: dict, requests) -> tuple[int, dict[int, float]]:
    """lm-eval's batch size with the shortest wall time on `requests` (best of two runs each), and the times."""
    seconds = {bs: min(time_lm_eval(hflm, requests)[0] for _ in range(2)) for bs, hflm in hflms.items()}
    return min(seconds, key=seconds.get), seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=40, help="items per task (MMLU: spread over 4 subjects)")
    p.add_argument("--preset", default="tiny", help="model preset (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--batch-size", default="best",
                   help="lm-eval HFLM batch size, or 'best': the fastest of %s per task" % (BATCH_SIZES,))
    p.add_argument("--repeats", type=int, default=7, help="timed runs per side (median; 95%% CI from 6 on)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadiest on a shared machine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    tok = train_bpe([english_text(1_000_000)], vocab_size=args.vocab_size)
    cfg = preset(args.preset, vocab_size=tok.vocab_size, max_seq_len=2048, bos_token_id=tok.bos_id,
                 eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    model = InternLM2(cfg)
    model.init_weights(0)
    tasks = {"mmlu (5-shot)": (mmlu.task(["anatomy", "astronomy", "marketing", "virology"]), max(args.items // 4, 1)),
             "hellaswag (0-shot)": (hellaswag.task(), args.items)}
    rows, sweeps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tmp, fmt="llama")
        tok.save(tmp)
        ours = load_lm(tmp, device=args.device)
        sizes = BATCH_SIZES if args.batch_size == "best" else (int(args.batch_size),)
        hflms = {bs: HFLM(pretrained=tmp, device=args.device, dtype="float32", batch_size=bs, add_bos_token=True)
                 for bs in sizes}
        for name, (task, limit) in tasks.items():
            n_items, requests = requests_for(task, limit)
            warm = requests[: 2 * len(task.examples(1)[0].choices)]
            time_ours(ours, warm)
            for hflm in hflms.values():
                time_lm_eval(hflm, warm)
            batch, sweep = fastest_batch_size(hflms, requests) if len(hflms) > 1 else (sizes[0], {})
            theirs = hflms[batch]
            runs = {"ours": [], "theirs": []}
            logliks = {}
            for r in range(args.repeats):
                order = [("ours", time_ours, ours), ("theirs", time_lm_eval, theirs)]
                for side, fn, lm in (order if r % 2 == 0 else order[::-1]):
                    wall, cpu, logliks[side] = fn(lm, requests)
                    runs[side].append((wall, cpu))
            wall = {side: statistics.median(w for w, _ in v) for side, v in runs.items()}
            cpu = {side: statistics.median(c for _, c in v) for side, v in runs.items()}
            delta = max(abs(a - b) for a, b in zip(logliks["ours"], logliks["theirs"]))
            ratios = [paired_ratio([run[k] for run in runs["ours"]], [run[k] for run in runs["theirs"]], unit="x")
                      for k in (0, 1)]  # wall, CPU time: the median of the per-run ratios [95% CI]
            rows.append((name, n_items, len(requests), n_items / wall["ours"], n_items / wall["theirs"],
                         *ratios, delta, batch))
            if sweep:
                sweeps.append(f"{name}: " + ", ".join(f"{bs}: {t:.2f} s" for bs, t in sweep.items()))
        hf = hflms[sizes[0]]
        settings = [
            f"both: the same {sum(r[2] for r in rows)} requests, fp32, {args.device}, {args.threads} torch threads, "
            f"window {cfg.max_seq_len}, BOS prepended, tokenisation included",
            f"lmforge: load_lm(dir), dtype {next(ours.model.parameters()).dtype}, packed rows of "
            f"{ours.row_tokens or auto_row_tokens(cfg)} trie nodes, batches of <= {ours.batch_tokens} tokens",
            f"lm-eval: HFLM(pretrained=dir, dtype=float32, add_bos_token=True, "
            f"batch_size={'the fastest of the sweep' if len(sizes) > 1 else sizes[0]}), "
            f"logits_cache={hf.logits_cache}, max_length={hf.max_length}, attention "
            f"{hf.model.config._attn_implementation}",
        ] + ([f"lm-eval batch-size sweep (best of two runs): {s}" for s in sweeps] if sweeps else [])

    header = (f"Log-likelihood evaluation, lmforge vs lm-eval {__import__('lm_eval').__version__} HFLM "
              f"(transformers {__import__('transformers').__version__}, batch size {args.batch_size}); "
              f"{args.preset} preset, {num_params(cfg) / 1e6:.2f}M params, vocab {cfg.vocab_size}, fp32, "
              f"{args.device}, {args.threads} threads, {cpu_name()}, torch {torch.__version__}; "
              f"median of {args.repeats} interleaved runs; ratios: median of the per-run ratios [95% CI]")
    lines = [header, "",
             "| task | items | requests | lm-eval batch | lmforge items/s | lm-eval items/s | ratio (wall) "
             "| ratio (CPU time) | max abs Δ loglik |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, n_items, n_req, ours_rate, theirs_rate, ratio, cpu_ratio, delta, batch in rows:
        lines.append(f"| {name} | {n_items} | {n_req} | {batch} | {ours_rate:.2f} | {theirs_rate:.2f} | {ratio} "
                     f"| {cpu_ratio} | {delta:.1e} |")
    lines += [""] + [f"- {line}" for line in settings]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
