"""The `mimg` stage of `lmforge run`: long-context multi-hop instructions from the run's own chat model.

Paper: LongMIT / MIMG, arXiv 2409.01893; docs/papers.md §8. The stage serves the SFT model with
`lmforge serve`'s engine on a local port (the same OpenAI-compatible HTTP server a user would run),
points `lmforge data mimg` at it with the longest curated documents that fit the model's window
(`docs_per_sample` of them in one context), and stops the server. The
conversations it writes are in the SFT format, ready for long-context SFT
(`lmforge sft RECIPE --set sft.data=runs/<name>/mimg/conversations.jsonl --set sft.seq_len=1024`).

A 2M-parameter model's questions are not worth training on; what the demo shows is the pipeline:
every agent call made and cached, what each stage kept and why the rest was dropped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console


def mimg_stage(section, chat_model: Path, docs: list, device: str, folder: Path, console: Console) -> dict:
    from lmforge.data.mimg.client import Client
    from lmforge.data.mimg.graph import approx_tokens
    from lmforge.data.mimg.pipeline import MimgOptions, generate_mimg
    from lmforge.serve.server import build_server, start_in_thread

    opts = MimgOptions(chunk_tokens=section.chunk_tokens, questions_per_chunk=section.questions_per_chunk,
                       docs_per_sample=section.docs_per_sample, max_context_tokens=section.max_context_tokens,
                       max_docs=section.docs, seed=section.seed)
    # The longest documents first, of those that leave room for a sample's others in its context
    # (the demo model's window is 1,024 tokens; a curated long-context document is 8x that).
    fits = section.max_context_tokens // section.docs_per_sample
    docs = sorted((d for d in docs if approx_tokens(d.text) <= fits), key=lambda d: -len(d.text))[:section.docs]
    if not docs:
        raise ValueError(f"mimg: no curated document fits max_context_tokens / docs_per_sample = {fits} tokens; "
                         "raise mimg.max_context_tokens or lower mimg.docs_per_sample")
    app, runner = build_server(chat_model, device=device, max_batch=max(section.concurrency, 1))
    server, thread, url = start_in_thread(app)
    console.print(f"mimg: serving {chat_model} at {url}, {len(docs)} documents")
    try:
        client = Client(f"{url}/v1", chat_model.resolve().name, None, folder / "cache", section.concurrency,
                        max_tokens=section.max_tokens)
        stats = generate_mimg(docs, client, folder / "conversations.jsonl", opts)
    finally:
        server.should_exit = True
        thread.join()
        runner.stop()
    console.print(stats.table())
    return {"conversations": stats.stages["score: multi-hop"].items_out, "stages": stats.to_json(),
            "requests": client.stats.requests, "cache_hits": client.stats.cache_hits,
            "failures": dict(client.stats.failures), "options": dataclasses.asdict(opts)}
