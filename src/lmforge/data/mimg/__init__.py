"""MIMG (LongMIT, arXiv 2409.01893; docs/papers.md §8): long-context multi-hop instruction data from
documents, by four agents that talk to any OpenAI-compatible endpoint (`lmforge serve` by default).

    client.py    the endpoint: cache, concurrency limit, retries
    embed.py     text vectors: hashed TF-IDF here, or the endpoint's /v1/embeddings
    graph.py     near-duplicate removal, chunks, kNN graph, groups of related documents
    agents.py    prompts and parsers of the question, verification and merger agents
    sampling.py  which QAs are merged: nearest within and across documents
    scoring.py   grounding, hop coverage, an optional judge
    stats.py     counts and skip reasons per stage
    pipeline.py  `generate_mimg`, the method top to bottom
    cli.py       `lmforge data mimg`
"""

from lmforge.data.mimg.client import Client
from lmforge.data.mimg.pipeline import MimgOptions, generate_mimg

__all__ = ["Client", "MimgOptions", "generate_mimg"]
