"""FlexAttention block masks for packed rows: lmforge's vs `create_block_mask`, side by side.

Both build the BlockMask of document-causal attention over one packed row of T tokens (documents
of --doc tokens, as the long-context stage packs them). `create_block_mask` evaluates the mask
function at all T x T positions; lmforge decides each 128 x 128 block from the id range of its
blocks (lmforge.model.attention._flex_block_mask). Each measurement runs in a fresh process:
the median time over --repeats builds, and the peak memory growth (CPU: peak RSS; CUDA:
max_memory_allocated). The two block tables are checked equal first.

    python bench/attention_bench.py [--lengths 4096 8192 16384] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from rich.console import Console

from lmforge.machine import cpu_name
from memory import current_rss, peak_rss, reset_peak_rss
from tables import print_table
from lmforge.model.attention import _flex_block_mask


def _ids(T: int, doc: int, device: str) -> torch.Tensor:
    return (torch.arange(T, device=device) // doc)[None]


def _reference(document_ids: torch.Tensor):
    from torch.nn.attention.flex_attention import create_block_mask

    def document_causal(b, h, q_idx, kv_idx):
        return (document_ids[b, q_idx] == document_ids[b, kv_idx]) & (q_idx >= kv_idx)

    B, T = document_ids.shape
    return create_block_mask(document_causal, B, None, T, T, device=document_ids.device)


BUILDERS = {"lmforge": _flex_block_mask, "create_block_mask": _reference}


def child(name: str, T: int, args) -> dict:
    """Build the mask `repeats` times in this (fresh) process: median seconds, peak growth in bytes."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    ids = _ids(T, args.doc, device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = current_rss()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        BUILDERS[name](ids)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() if cuda else peak_rss()) - base
    return {"s": statistics.median(times), "peak": max(peak, 0)}


def _fresh(name: str, T: int) -> dict:
    cmd = [sys.executable, __file__, "--child", name, str(T), *sys.argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_equal(T: int, doc: int) -> None:
    ours, ref = _flex_block_mask(_ids(T, doc, "cpu")), _reference(_ids(T, doc, "cpu"))
    assert torch.equal(ours.to_dense(), ref.to_dense()), f"block tables differ at T={T}"
    assert torch.equal(ours.full_kv_num_blocks, ref.full_kv_num_blocks), f"full blocks differ at T={T}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384], help="tokens per row")
    p.add_argument("--doc", type=int, default=3000, help="tokens per packed document")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--markdown", help="also write the table as Markdown here")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args)))
        return
    console = Console()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()
    console.print(f"{device}; torch {torch.__version__}; one row, documents of {args.doc} tokens")
    rows = []
    for T in args.lengths:
        _check_equal(min(T, 4096), args.doc)
        ours, ref = _fresh("lmforge", T), _fresh("create_block_mask", T)
        rows.append((f"{T:,}", f"{ours['s'] * 1e3:,.1f}", f"{ref['s'] * 1e3:,.1f}", f"{ref['s'] / ours['s']:,.0f}x",
                     f"{ours['peak'] / 2**20:,.1f}", f"{ref['peak'] / 2**20:,.0f}"))
    cols = ("tokens", "lmforge ms", "create_block_mask ms", "speed-up", "lmforge peak MB", "create_block_mask peak MB")
    print_table(console, "FlexAttention block mask of one packed row", cols, rows, args.markdown)


if __name__ == "__main__":
    main()
