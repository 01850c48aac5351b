"""Log-likelihood evaluation speed: lmforge's scorer vs lm-evaluation-harness's HF backend.

The same model is exported to the Hugging Face Llama format; lm-eval's `HFLM` loads that directory
(transformers' LlamaForCausalLM) and lmforge loads it through its interop. Both then score the
same (context, continuation) requests - the rendered items of MMLU (5-shot) and HellaSwag
(0-shot) - from text to per-request log-likelihoods, tokenisation included. We report items
(questions) per second, the ratio ours / theirs (above 1: lmforge is faster) by wall-clock and by
CPU time of the process (steadier on a shared machine, where a descheduled OpenMP thread stalls
the other), and the largest log-likelihood difference, as a check that both computed the same. After a warm-up, runs
are interleaved (ours, theirs, theirs, ours, ...) and the median is reported, so that a
background load on a shared machine slows both sides alike; `--repeats 1` is a single run.

    .venv/bin/python bench/eval_bench.py [--items 40] [--repeats 3] [--threads 1] [--preset tiny] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

from lmforge.machine import cpu_name
from lmforge.corpora import english_text
from lmforge.eval.lm import load_lm
from lmforge.eval.tasks import hellaswag, mmlu
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=40, help="items per task (MMLU: spread over 4 subjects)")
    p.add_argument("--preset", default="tiny", help="model preset (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=16, help="lm-eval HFLM batch size")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per side (median reported)")
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
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tmp, fmt="llama")
        tok.save(tmp)
        ours = load_lm(tmp, device=args.device)
        theirs = HFLM(pretrained=tmp, device=args.device, dtype="float32", batch_size=args.batch_size,
                      add_bos_token=True)
        for name, (task, limit) in tasks.items():
            n_items, requests = requests_for(task, limit)
            warm = requests[: 2 * len(task.examples(1)[0].choices)]
            time_ours(ours, warm)
            time_lm_eval(theirs, warm)
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
            rows.append((name, n_items, len(requests), n_items / wall["ours"], n_items / wall["theirs"],
                         wall["theirs"] / wall["ours"], cpu["theirs"] / cpu["ours"], delta))

    header = (f"Log-likelihood evaluation, lmforge vs lm-eval {__import__('lm_eval').__version__} HFLM "
              f"(transformers {__import__('transformers').__version__}, batch {args.batch_size}); "
              f"{args.preset} preset, {num_params(cfg) / 1e6:.2f}M params, vocab {cfg.vocab_size}, fp32, "
              f"{args.device}, {args.threads} threads, {cpu_name()}, torch {torch.__version__}; "
              f"median of {args.repeats} interleaved runs")
    lines = [header, "",
             "| task | items | requests | lmforge items/s | lm-eval items/s | ratio (wall) | ratio (CPU time) "
             "| max abs Δ loglik |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, n_items, n_req, ours_rate, theirs_rate, ratio, cpu_ratio, delta in rows:
        lines.append(f"| {name} | {n_items} | {n_req} | {ours_rate:.2f} | {theirs_rate:.2f} | {ratio:.2f}x "
                     f"| {cpu_ratio:.2f}x | {delta:.1e} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
