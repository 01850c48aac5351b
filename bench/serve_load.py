"""Load test of `lmforge serve`: many concurrent streaming clients against a tiny model on this CPU.

The server runs in this process (uvicorn on a free port, the engine on its thread); --clients
asyncio clients (httpx) each stream one chat completion of --max-tokens tokens, all at once, in
--waves waves. Reported: whether every request was answered completely (none lost, none failed),
time to first token (p50 / p99), whole-request time, total generated tokens/s, the KV blocks still
held after each wave (must be 0) and the resident memory after each wave (it must not grow from
wave to wave once the first has warmed the allocator).

    .venv/bin/python bench/serve_load.py                       # 200 clients x 2 waves, a random tiny model
    .venv/bin/python bench/serve_load.py --model runs/tiny/pretrain/model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    """The current resident set size (Linux /proc), in MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


async def one_client(client, url: str, body: dict, key: str) -> dict:
    start = time.perf_counter()
    first, tokens, finish = None, 0, None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {key}"}) as r:
        if r.status_code != 200:
            return {"ok": False, "status": r.status_code}
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            if choice["delta"].get("content"):
                tokens += 1
                first = first or time.perf_counter()
            finish = choice["finish_reason"] or finish
    end = time.perf_counter()
    return {"ok": finish in ("length", "stop"), "ttft": (first or end) - start, "total": end - start,
            "finish": finish, "chunks": tokens}


async def wave(url: str, clients: int, max_tokens: int, key: str) -> tuple[list[dict], float]:
    import httpx

    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        bodies = [{"model": "bench", "stream": True, "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
                   "messages": [{"role": "user", "content": f"Tell me about thing number {i}."}]}
                  for i in range(clients)]
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_client(client, url, b, key) for b in bodies), return_exceptions=True)
        seconds = time.perf_counter() - t0
    return [r if isinstance(r, dict) else {"ok": False, "error": repr(r)} for r in results], seconds


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", help="a checkpoint directory (default: a random tiny model and tokenizer)")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--waves", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--kv-tokens", type=int, default=16384)
    args = p.parse_args(argv)

    from lmforge.serve.server import build_server, start_in_thread

    model = tok = None
    if args.model is None:
        from lmforge.corpora import english_text
        from lmforge.model import InternLM2, ModelConfig
        from lmforge.tokenizer import train_bpe

        tok = train_bpe([english_text(200_000)], vocab_size=2048)
        model = InternLM2(ModelConfig(vocab_size=tok.vocab_size, dim=128, n_layers=4, n_heads=4, n_kv_heads=2,
                                      ffn_dim=384, max_seq_len=512, rope_theta=10_000.0, bos_token_id=tok.bos_id,
                                      eos_token_id=tok.eos_id, pad_token_id=tok.pad_id))
        model.init_weights(0)
    key = "bench-key"
    app, runner = build_server(args.model or "bench", model_name="bench", model=model, tokenizer=tok,
                               max_batch=args.max_batch, kv_tokens=args.kv_tokens, api_key=key)
    server, thread, url = start_in_thread(app)
    print(f"server {url}: {args.clients} streaming clients x {args.waves} waves, {args.max_tokens} tokens each, "
          f"max batch {args.max_batch}, KV cache {runner.engine.capacity_tokens:,} tokens")
    rows = []
    try:
        for w in range(args.waves):
            results, seconds = asyncio.run(wave(url, args.clients, args.max_tokens, key))
            ok = [r for r in results if r["ok"]]
            ttft = [r["ttft"] for r in ok]
            total = [r["total"] for r in ok]
            generated = runner.engine.stats.generated_tokens
            rows.append({"wave": w + 1, "answered": len(ok), "lost": len(results) - len(ok),
                         "ttft_p50": quantile(ttft, .5), "ttft_p99": quantile(ttft, .99),
                         "total_p50": quantile(total, .5), "total_p99": quantile(total, .99),
                         "tokens_per_s": args.clients * args.max_tokens / seconds, "seconds": seconds,
                         "kv_blocks_held": runner.engine.kv_blocks_used, "rss_mb": rss_mb(),
                         "generated_total": generated})
            if len(ok) < len(results):
                print("failures:", [r for r in results if not r["ok"]][:5])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        runner.stop()
    print("\n| wave | answered | lost | TTFT p50 / p99 s | request p50 / p99 s | tokens/s | KV blocks held after | RSS MB after |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['wave']} | {r['answered']} | {r['lost']} | {r['ttft_p50']:.2f} / {r['ttft_p99']:.2f} | "
              f"{r['total_p50']:.2f} / {r['total_p99']:.2f} | {r['tokens_per_s']:,.0f} | {r['kv_blocks_held']} | "
              f"{r['rss_mb']:,.0f} |")
    lost = sum(r["lost"] for r in rows)
    return 0 if lost == 0 and all(r["kv_blocks_held"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
