"""`lmforge data`: the WanJuan-CC / InternLM2 web-data pipeline.

Papers: WanJuan-CC, arXiv 2402.19282; InternLM2 report, arXiv 2403.17297, section 3.1; docs/papers.md §4.

Raw crawl files become tokenized, packed training shards through stages that each write their own
output and statistics, in the papers' order:

    format    WARC (charsets checked, detected, repaired) -> non-200 responses dropped -> URL filter
              (domain lists, words in the URL) -> main-text extraction (trafilatura / resiliparse)
              -> language ID (pycld2) -> ids
    clean     Gopher quality + repetition, C4 and FineWeb line rules; character-based rules for Chinese;
              personal data (e-mail, phone, IP, card, Chinese ID) masked with typed placeholders
    dedup     exact (normalised-text hash) + MinHash LSH (5-grams, 128 hashes, threshold 0.7), keep the
              latest dump of each cluster
    safe      word blocklist, toxicity and pornography classifiers
    quality   advertisement and fluency classifiers, perplexity under an lmforge model
    tokenize  BOS + tokens + EOS per document -> `lmforge.shards`
    longctx   InternLM2's long-context selection (length, statistics, P(S2|S1) - P(S2))

The shape is datatrove's: a `Document`, steps that are generator transforms
`run(docs, rank, world_size)`, filters that return keep/drop with a reason, a pipeline that is a
list of steps written in a TOML recipe, and executors (local, Ray) that run the same list and
resume from per-task completion markers.
"""

from lmforge.data.document import Document
from lmforge.data.pipeline import Pipeline, load_pipeline  # noqa: E402
from lmforge.data.step import Filter, Step

__all__ = ["Document", "Filter", "Pipeline", "Step", "load_pipeline"]
