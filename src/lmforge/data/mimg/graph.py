"""The document graph of MIMG: deduplicated documents, their ~2k-token chunks, kNN neighbours, and
the groups of neighbouring documents that become one long context each.

Paper: LongMIT / MIMG, arXiv 2409.01893 (the public code: embed the corpus, build a kNN graph,
traverse it into paths of related documents; near-duplicates out at n-gram Jaccard 0.75);
docs/papers.md §8.

* `near_duplicates`: a document whose 5-gram shingle set has Jaccard >= threshold with an earlier
  kept one is dropped. MinHash LSH (the dedup stage's signatures, bands chosen for the threshold)
  finds the candidate pairs; each candidate is then checked with the *exact* Jaccard of the two
  shingle sets, so the threshold is the formula's and not an estimate.
* `chunk_text`: sentences packed into chunks of at most `chunk_tokens` approximate tokens
  (`approx_tokens`: UTF-8 bytes / 4, what a BPE vocabulary averages on English; no tokenizer is
  needed to talk to a remote endpoint). A sentence longer than a chunk is cut at words.
* `knn`: the k most cosine-similar other documents of each, in blocks of rows.
* `document_groups`: a walk from each not yet used document to its nearest unused neighbour, then
  that one's, until `docs_per_group` documents or `max_context_tokens`: each document lands in one
  group, and a group's documents are related, so the cross-document questions have something to join.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from lmforge.data.dedup.minhash import band_keys, minhash_signatures, optimal_bands, permutations, text_shingles
from lmforge.data.text import sentences

NGRAM = 5


def approx_tokens(text: str) -> int:
    """About how many BPE tokens `text` is: ceil(UTF-8 bytes / 4)."""
    return -(-len(text.encode("utf-8")) // 4)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two sets of unique values (two empty sets: 1)."""
    union = np.union1d(a, b).size
    return np.intersect1d(a, b, assume_unique=True).size / union if union else 1.0


def near_duplicates(texts: list[str], threshold: float = 0.75, ngram: int = NGRAM) -> dict[int, tuple[int, float]]:
    """{dropped index: (kept index it duplicates, Jaccard)}; earlier texts win."""
    shingles = [np.unique(text_shingles(t, ngram)[0]) for t in texts]
    a, b = permutations(128)
    signatures = minhash_signatures(shingles, a, b)
    bands, rows = optimal_bands(threshold, 128)
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    candidates: dict[int, set[int]] = defaultdict(set)
    for i, keys in enumerate(band_keys(signatures, bands, rows)):
        for band, key in enumerate(keys.tolist()):
            bucket = buckets[band, key]
            candidates[i].update(bucket)
            bucket.append(i)
    dropped: dict[int, tuple[int, float]] = {}
    for i in range(len(texts)):
        for j in sorted(candidates[i]):
            if j in dropped:
                continue
            similarity = jaccard(shingles[i], shingles[j])
            if similarity >= threshold:
                dropped[i] = (j, similarity)
                break
    return dropped


def chunk_text(text: str, chunk_tokens: int = 2000) -> list[str]:
    """Consecutive pieces of `text` of at most `chunk_tokens` approximate tokens, cut between sentences."""
    pieces: list[str] = []
    for sentence in sentences(text):
        if approx_tokens(sentence) <= chunk_tokens:
            pieces.append(sentence)
            continue
        words, current = sentence.split(), []
        for word in words:  # an over-long "sentence" (a table, a list) is cut at words
            if current and approx_tokens(" ".join([*current, word])) > chunk_tokens:
                pieces.append(" ".join(current))
                current = []
            current.append(word)
        if current:
            pieces.append(" ".join(current))
    chunks, current, size = [], [], 0
    for piece in pieces:
        n = approx_tokens(piece) + 1
        if current and size + n > chunk_tokens:
            chunks.append(" ".join(current))
            current, size = [], 0
        current.append(piece)
        size += n
    if current:
        chunks.append(" ".join(current))
    return chunks


def knn(vectors: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities), each (n, min(k, n - 1)): the nearest other rows by dot product, best first."""
    n = vectors.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
    indices = np.empty((n, k), dtype=np.int64)
    sims = np.empty((n, k), dtype=np.float32)
    for lo in range(0, n, block):
        s = vectors[lo:lo + block] @ vectors.T
        s[np.arange(s.shape[0]), np.arange(lo, lo + s.shape[0])] = -np.inf  # not one's own neighbour
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        indices[lo:lo + block] = np.take_along_axis(top, order, axis=1)
        sims[lo:lo + block] = np.take_along_axis(s, indices[lo:lo + block], axis=1)
    return indices, sims


def document_groups(neighbours: np.ndarray, tokens: list[int], docs_per_group: int,
                    max_context_tokens: int) -> list[list[int]]:
    """Groups of document indices: greedy walks over the kNN graph, each document used once."""
    used = np.zeros(len(tokens), dtype=bool)
    groups = []
    for start in range(len(tokens)):
        if used[start]:
            continue
        group, size, current = [start], tokens[start], start
        used[start] = True
        while len(group) < docs_per_group:
            nxt = next((int(j) for j in neighbours[current] if not used[j] and size + tokens[j] <= max_context_tokens),
                       None)
            if nxt is None:
                break
            group.append(nxt)
            used[nxt] = True
            size += tokens[nxt]
            current = nxt
        groups.append(group)
    return groups
