"""Multiple-question sampling: which verified single-hop QAs are merged into one multi-hop question.

Paper: LongMIT / MIMG, arXiv 2409.01893, "Multiple Question Sampling Strategy" (the public code:
seed QAs drawn at random, then their nearest QAs by embedding, within the seed's document and
across the other documents of the context); docs/papers.md §8.

`sample_hops` works on one document group: `docs[i]` is the document of QA i and `vectors[i]` its
unit embedding (question and answer). For each of up to `seeds` seed QAs (drawn without
replacement by a seeded generator, so a rerun asks the same merges and hits the cache) it yields

* an **intra-document** sample: the seed and its `hops - 1` most similar QAs of the same document;
* an **inter-document** sample: the seed and its `hops - 1` most similar QAs of the group's other
  documents, taken from as many different documents as possible (the nearest of each document
  first), so the question has to join documents.

A sample that cannot be filled (too few QAs in the document, a group of one document) is not
made; `sample_hops` says how many were short, by kind, for the statistics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    kind: str                  # "intra_doc" or "inter_doc"
    qas: tuple[int, ...]       # QA indices, the seed first, then by decreasing similarity to it


def nearest(seed: int, candidates: np.ndarray, vectors: np.ndarray, n: int) -> list[int]:
    """The `n` candidates most similar to the seed (dot product), best first; ties by index."""
    if n <= 0 or not candidates.size:
        return []
    sims = vectors[candidates] @ vectors[seed]
    order = np.lexsort((candidates, -sims))
    return [int(c) for c in candidates[order[:n]]]


def spread_nearest(seed: int, candidates: np.ndarray, docs: np.ndarray, vectors: np.ndarray, n: int) -> list[int]:
    """`n` similar candidates from as many documents as possible: the best of each document in
    order of similarity, then the second best of each, and so on."""
    ranked = nearest(seed, candidates, vectors, candidates.size)
    rank_in_doc, seen = [], Counter()
    for c in ranked:
        rank_in_doc.append(seen[int(docs[c])])
        seen[int(docs[c])] += 1
    order = sorted(range(len(ranked)), key=lambda i: (rank_in_doc[i], i))
    return [ranked[i] for i in order[:n]]


def sample_hops(docs: np.ndarray, vectors: np.ndarray, hops: int = 2, seeds: int = 4,
                rng_seed: int = 0) -> tuple[list[Sample], Counter]:
    """(samples, Counter of samples not made by reason) for one document group."""
    docs = np.asarray(docs)
    samples, short, made = [], Counter(), set()
    if docs.size == 0:
        return samples, short
    rng = np.random.default_rng(rng_seed)
    chosen = rng.permutation(docs.size)[:seeds]
    everyone = np.arange(docs.size)
    for seed in (int(s) for s in chosen):
        same = everyone[(docs == docs[seed]) & (everyone != seed)]
        other = everyone[docs != docs[seed]]
        for kind, picked, why in (
                ("intra_doc", nearest(seed, same, vectors, hops - 1), "too few QAs in the document"),
                ("inter_doc", spread_nearest(seed, other, docs, vectors, hops - 1),
                 "too few QAs in the other documents")):
            key = (kind, frozenset((seed, *picked)))
            if len(picked) < hops - 1:
                short[f"{kind}: {why}"] += 1
            elif key in made:
                short[f"{kind}: same QAs as another sample"] += 1
            else:
                made.add(key)
                samples.append(Sample(kind, (seed, *picked)))
    return samples, short
