"""`lmforge data mimg INPUT... --out FILE`: the arguments of `lmforge.data.mimg.pipeline.generate_mimg`.

Paper: LongMIT / MIMG, arXiv 2409.01893; docs/papers.md §8.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from lmforge.config import positive_int

DESCRIPTION = """Make long-context multi-hop instruction data (LongMIT's MIMG) from documents with any
OpenAI-compatible chat endpoint: `lmforge serve MODEL` on this machine by default, or any other
server by --base-url and --api-key (vLLM, LMDeploy, a hosted API).

    lmforge serve runs/tiny/sft/model &                     # the endpoint, http://127.0.0.1:8000/v1
    lmforge data mimg docs.jsonl --out mimg/train.jsonl     # documents: JSONL rows with "text"
    lmforge data mimg runs/tiny/data/dedup --format jsonl --out mimg.jsonl    # a curated stage folder
    lmforge data mimg docs.jsonl --out mimg.jsonl --base-url https://host/v1 --api-key KEY --model NAME

Steps: near-duplicate documents out (5-gram Jaccard >= --dedup-threshold); documents embedded
(hashed TF-IDF here, or --embeddings endpoint) and linked to their --neighbours nearest; walks over
that graph make groups of --docs-per-sample related documents (the long context); each ~--chunk-tokens
chunk gets up to --questions-per-chunk questions (question agent); the verification agent drops
questions that need outside context, answers the rest from the chunk and simplifies the answers;
answers not grounded in their chunk (< --min-grounding) are dropped; for --seeds-per-group seed QAs,
the nearest QAs of the same document and of the other documents are merged, --hops at a time, into
one multi-hop question (merger agent); merged QAs are scored (grounding, hop coverage, --judge).

Every call is cached under --cache (default: OUT's name + .cache/), so an interrupted run resumes and
a rerun sends no request. Unusable answers are counted per stage with their reason and skipped; the
table is printed and written to OUT's name + .stats.json. The output is one conversation per
question in the OpenAI messages shape that `lmforge sft` reads (its [sft] data = OUT)."""


def _cmd(args) -> int:
    from lmforge.data.mimg.client import Client
    from lmforge.data.mimg.pipeline import MimgOptions, generate_mimg, read_documents, stats_path

    opts = MimgOptions(**{f.name: getattr(args, f.name) for f in fields(MimgOptions)})
    docs, errors = read_documents(args.inputs, args.format)
    for error in errors[:5]:
        print(f"lmforge data mimg: skipped input: {error}")
    if not docs:
        raise ValueError(f"{', '.join(args.inputs)}: no documents with text (expected {args.format} records "
                         "with a 'text' field)")
    out = Path(args.out)
    cache = args.cache or str(out.with_name(out.name.removesuffix(".jsonl") + ".cache"))
    client = Client(args.base_url, args.model or "", args.api_key or os.environ.get("LMFORGE_API_KEY")
                    or os.environ.get("OPENAI_API_KEY"), cache, args.concurrency, args.retries, args.backoff,
                    args.timeout, args.temperature, args.max_tokens, not args.no_structured)
    stats = generate_mimg(docs, client, out, opts)
    print(stats.table())
    print(f"requests: {client.stats.requests} sent, {client.stats.cache_hits} from the cache, "
          f"{client.stats.retries} retried, failed: {dict(client.stats.failures) or 0}")
    n = stats.stages["score: multi-hop"].items_out
    print(f"wrote {n} conversations to {out} (counts: {stats_path(out)}; cache: {cache})")
    return 0


def register(actions) -> argparse.ArgumentParser:
    """Add `mimg` to the `lmforge data` actions."""
    p = actions.add_parser("mimg", help="long-context multi-hop instruction data (LongMIT MIMG) over an "
                           "OpenAI-compatible endpoint", description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="document files, folders or globs")
    p.add_argument("--format", choices=["jsonl", "parquet", "text"], default="jsonl",
                   help="input format (jsonl also reads .jsonl.gz/.zst; default: %(default)s)")
    p.add_argument("--out", required=True, help="output conversations, JSONL")
    p.add_argument("--cache", help="folder of cached agent calls (default: OUT's name + .cache)")
    api = p.add_argument_group("endpoint")
    api.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="default: %(default)s (lmforge serve)")
    api.add_argument("--api-key", help="Bearer key (default: $LMFORGE_API_KEY, then $OPENAI_API_KEY, else none)")
    api.add_argument("--model", help="model name (default: the first one the endpoint lists at /models)")
    api.add_argument("--concurrency", type=positive_int, default=4, help="requests at once (default: %(default)s)")
    api.add_argument("--retries", type=int, default=4, help="retries of a failed request (default: %(default)s)")
    api.add_argument("--backoff", type=float, default=1.0, help="first retry delay in s, doubled each time "
                     "(default: %(default)s)")
    api.add_argument("--timeout", type=float, default=300.0, help="seconds per request (default: %(default)s)")
    api.add_argument("--temperature", type=float, default=0.0, help="default: %(default)s")
    api.add_argument("--max-tokens", type=int, default=512, help="per answer; 0 leaves it to the server "
                     "(lmforge serve: the rest of the model's context) (default: %(default)s)")
    api.add_argument("--no-structured", action="store_true", help="do not send response_format (JSON Schema "
                     "structured outputs) with the question, standalone and merger agents: for an endpoint "
                     "that refuses it; the answers are then parsed from free text")
    api.add_argument("--embeddings", choices=["local", "endpoint"], default="local",
                     help="local: hashed TF-IDF; endpoint: /v1/embeddings (default: %(default)s)")
    api.add_argument("--embedding-model", default="", help="model name for --embeddings endpoint")
    sizes = p.add_argument_group("sizes and thresholds")
    sizes.add_argument("--chunk-tokens", type=positive_int, default=2000, help="default: %(default)s")
    sizes.add_argument("--questions-per-chunk", type=positive_int, default=3, help="default: %(default)s")
    sizes.add_argument("--docs-per-sample", type=positive_int, default=4, help="documents per long context "
                       "(default: %(default)s)")
    sizes.add_argument("--max-context-tokens", type=positive_int, default=32000, help="default: %(default)s")
    sizes.add_argument("--neighbours", type=positive_int, default=8, help="k of the kNN graph (default: %(default)s)")
    sizes.add_argument("--dedup-threshold", type=float, default=0.75, help="default: %(default)s")
    sizes.add_argument("--hops", type=positive_int, default=2, help="QAs per merged question (default: %(default)s)")
    sizes.add_argument("--seeds-per-group", type=positive_int, default=4, help="default: %(default)s")
    sizes.add_argument("--min-grounding", type=float, default=0.5, help="default: %(default)s")
    sizes.add_argument("--min-coverage", type=float, default=1.0, help="share of hops a merged QA must use "
                       "(default: %(default)s)")
    sizes.add_argument("--judge", action="store_true", help="also have the model rate each merged QA 1-10")
    sizes.add_argument("--min-judge", type=float, default=6.0, help="with --judge (default: %(default)s)")
    sizes.add_argument("--max-docs", type=positive_int, help="use only the first N documents")
    sizes.add_argument("--seed", type=int, default=0, help="seed of the QA sampling (default: %(default)s)")
    p.set_defaults(fn=_cmd)
    return p
