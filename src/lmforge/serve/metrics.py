"""The server's Prometheus metrics, in the text exposition format (version 0.0.4).

Counters since the start (requests, prompt and generated tokens, prefix-cache hits, preemptions),
gauges of now (running and waiting requests, KV blocks in use and in all, tokens per second over the
last 10 s) and summaries of the latency of recent requests (time to first token, whole request).
"""

from __future__ import annotations

import statistics
import time

from lmforge.serve.runner import EngineRunner


def prometheus_text(runner: EngineRunner, started: float) -> str:
    engine, stats = runner.engine, runner.engine.stats
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, value: float, labels: str = "") -> None:
        if not any(line.startswith(f"# HELP lmforge_{name} ") for line in lines):
            lines.append(f"# HELP lmforge_{name} {help_}")
            lines.append(f"# TYPE lmforge_{name} {kind}")
        lines.append(f"lmforge_{name}{labels} {value:g}")

    metric("requests_total", "counter", "Requests received.", stats.requests)
    metric("requests_finished_total", "counter", "Requests finished (any reason).", stats.finished)
    metric("prompt_tokens_total", "counter", "Prompt tokens received.", stats.prompt_tokens)
    metric("generated_tokens_total", "counter", "Tokens generated.", stats.generated_tokens)
    metric("prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from the prefix cache.",
           stats.prefix_hit_tokens)
    metric("preemptions_total", "counter", "Requests preempted for lack of KV blocks.", stats.preemptions)
    metric("tokens_per_second", "gauge", "Tokens generated per second over the last 10 seconds.",
           runner.tokens_per_second())
    metric("running_requests", "gauge", "Requests being decoded.", len(engine.running))
    metric("queue_length", "gauge", "Requests waiting for room in the batch or the KV cache.", len(engine.waiting))
    metric("kv_blocks_used", "gauge", "KV cache blocks held by requests.", engine.kv_blocks_used)
    metric("kv_blocks_total", "gauge", "KV cache blocks in the budget.", engine.pool.blocks.n_blocks)
    metric("uptime_seconds", "gauge", "Seconds since the server started.", time.time() - started)
    for name, help_, values in (("time_to_first_token_seconds", "Time to the first token", list(runner.latencies.ttft)),
                                ("request_seconds", "Whole-request time", list(runner.latencies.total))):
        lines += [f"# HELP lmforge_{name} {help_} of the last {len(values)} finished requests.",
                  f"# TYPE lmforge_{name} summary"]
        for q in (0.5, 0.99):
            lines.append(f'lmforge_{name}{{quantile="{q}"}} {_quantile(values, q):g}')
        lines += [f"lmforge_{name}_sum {sum(values):g}", f"lmforge_{name}_count {len(values)}"]
    return "\n".join(lines) + "\n"


def _quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
