"""Text embeddings for the document graph and the question sampling: local, or from an endpoint.

Paper: LongMIT / MIMG, arXiv 2409.01893 (documents and QA pairs embedded, neighbours by cosine
similarity); docs/papers.md §8.

`lmforge serve` has no /v1/embeddings, and a 2M-parameter model's hidden states say little about a
document's topic, so the default is a **hashed TF-IDF** vector computed here: the normalised words
(characters for Chinese) and word bigrams of a text, hashed into `dim` buckets (the same units and
hashes as the MinHash dedup), sublinear term frequency `1 + log tf`, inverse document frequency
`log((1 + N) / (1 + df)) + 1` over the texts embedded together, L2-normalised. Cosine similarity is
then a dot product. Topic neighbours by shared rare words is what the graph needs; semantic
neighbours need a real embedding model: `embeddings="endpoint"` asks the endpoint's /v1/embeddings
(vLLM, LMDeploy, OpenAI) through the same cached client.
"""

from __future__ import annotations

import numpy as np

from lmforge.data.dedup.minhash import BASE, codepoint_unit_hashes, mix64, normalized_codepoints

DIM = 4096


def text_features(text: str, dim: int = DIM) -> np.ndarray:
    """Bucket ids of the text's units and unit bigrams (one entry per occurrence)."""
    units = codepoint_unit_hashes(normalized_codepoints(text))
    with np.errstate(over="ignore"):
        bigrams = mix64(units[:-1] * np.uint64(BASE) + units[1:]) if units.size > 1 else units[:0]
    return (np.concatenate([units, bigrams]) % np.uint64(dim)).astype(np.int64)


def tfidf_embeddings(texts: list[str], dim: int = DIM) -> np.ndarray:
    """(len(texts), dim) float32 unit vectors (all-zero for a text without words)."""
    tf = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        tf[i] = np.bincount(text_features(text, dim), minlength=dim)
    df = (tf > 0).sum(axis=0)
    idf = np.log((1 + len(texts)) / (1 + df)) + 1
    vectors = np.where(tf > 0, 1 + np.log(np.maximum(tf, 1)), 0) * idf
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def endpoint_embeddings(texts: list[str], client, model: str) -> np.ndarray:
    """Unit vectors from the endpoint's /embeddings; a text whose batch failed gets zeros (no neighbours)."""
    rows = client.embed(texts, model)
    width = next((len(r) for r in rows if r is not None), 1)
    vectors = np.array([r if r is not None else [0.0] * width for r in rows], dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def embed_texts(texts: list[str], embeddings: str = "local", client=None, model: str = "") -> np.ndarray:
    """`tfidf_embeddings` (embeddings="local") or `endpoint_embeddings` (embeddings="endpoint")."""
    if embeddings == "local":
        return tfidf_embeddings(texts)
    if embeddings == "endpoint":
        if client is None or not model:
            raise ValueError("embeddings='endpoint' needs a client and an embedding model name (--embedding-model)")
        return endpoint_embeddings(texts, client, model)
    raise ValueError(f"embeddings={embeddings!r}: choose 'local' (hashed TF-IDF) or 'endpoint' (/v1/embeddings)")
