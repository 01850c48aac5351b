"""The dedup stage: exact + MinHash LSH near-duplicate removal in four phases.

Paper: WanJuan-CC, arXiv 2402.19282, stage 3; docs/papers.md §4.

    signatures (one task per input slice)  normalised-text hash + 128 MinHash values + band keys
    buckets    (one task per band group)   documents sharing a band key are candidates; each
                                           candidate pair is verified on its full signatures
    clusters   (one task)                  union-find over exact-hash groups and verified pairs;
                                           each cluster keeps its most recent copy (largest dump
                                           id, then latest WARC date, then first seen)
    filter     (one task per input slice)  rewrite the documents without the removed copies

Every phase writes files under `_work/<stage>/`, so the bucket phase runs spread over workers or a
Ray cluster like the others. The verification step (estimated Jaccard >= threshold, off with
`verify = false`) removes most of the LSH false positives that the S-curve lets through just below
the threshold, at no cost to recall above it (docs/data.md has both numbers).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from lmforge.data.dedup.minhash import (FAMILIES, band_keys, hash_string, minhash_signatures, normalize,
                                        optimal_bands, permutations, texts_shingles)
from lmforge.data.dedup.unionfind import connected_components
from lmforge.data.stage import Phase, Stage
from lmforge.data.step import Step, TaskStats, Timer
from lmforge.data.writers import ShardedWriter, open_atomic, write_file

EXACT, FUZZY = 0, 1
REASONS = {EXACT: "duplicate_exact", FUZZY: "duplicate_near"}
SIGNATURE_BATCH = 1024  # texts per `texts_shingles` call (its arrays take ~60 bytes per character)
MAX_ALL_PAIRS = 32  # buckets up to this size verify every pair; larger ones pair with their first member


@dataclass
class MinHashDedup(Step):
    """The dedup step: its fields are the stage's recipe parameters (InternLM2: 5-grams, 128 hashes,
    threshold 0.7). It needs the whole corpus, so a `DedupStage` of its own runs it."""

    name: ClassVar[str] = "minhash_dedup"
    whole_corpus: ClassVar[bool] = True
    ngram: int = 5
    num_perm: int = 128
    threshold: float = 0.7
    bands: int = 0          # 0: chosen by `optimal_bands` for the threshold
    rows: int = 0
    exact: bool = True
    fuzzy: bool = True
    verify: bool = True
    hash_family: str = "multiply-shift"
    seed: int = 1
    band_groups: int = 2    # tasks of the bucket phase
    fp_weight: float = 0.2  # S-curve weights for choosing bands/rows: recall-leaning, since verification
    fn_weight: float = 0.8  # removes the false positives (0.5/0.5 is datasketch's default: 14 x 9)

    def __post_init__(self) -> None:
        if self.hash_family not in FAMILIES:
            raise ValueError(f"hash_family {self.hash_family!r}: choose one of {FAMILIES}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold {self.threshold}: must be in (0, 1)")
        if not self.bands or not self.rows:
            self.bands, self.rows = optimal_bands(self.threshold, self.num_perm, self.fp_weight, self.fn_weight)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")

    def corpus_stage(self, **stage_args) -> DedupStage:
        return DedupStage(**stage_args, params=self)


@dataclass
class DedupStage(Stage):
    params: MinHashDedup = field(default_factory=MinHashDedup)

    def phases(self) -> list[Phase]:
        return [Phase("signatures", self.tasks), Phase("buckets", max(1, min(self.params.band_groups, self.params.bands))),
                Phase("clusters", 1), Phase("filter", self.tasks)]

    @property
    def work(self) -> Path:
        return self.meta("work")

    def run_task(self, phase: str, rank: int) -> TaskStats:
        stats = TaskStats(stage=self.name, rank=rank)
        timer = Timer()
        {"signatures": self._signatures, "buckets": self._buckets, "clusters": self._clusters,
         "filter": self._filter}[phase](rank, stats)
        stats.seconds = timer.seconds()
        return stats

    # ---- phase 1 ----
    def _signatures(self, rank: int, stats: TaskStats) -> None:
        p = self.params
        a, b = permutations(p.num_perm, p.seed, p.hash_family)
        sigs, exact, texts, ids, dumps, dates, urls = [], [], [], [], [], [], []

        def flush() -> None:  # texts in batches: `texts_shingles` and `minhash_signatures` are fastest in bulk
            x, h = texts_shingles(texts, p.ngram)
            sigs.append(minhash_signatures(x, a, b, p.hash_family))
            exact.extend(h.tolist())
            texts.clear()
        for doc in self.read(self.my_files(rank), stats):
            if p.fuzzy:
                texts.append(doc.text)
                if len(texts) == SIGNATURE_BATCH:
                    flush()
            else:
                exact.append(hash_string(normalize(doc.text)))
            ids.append(doc.id)
            dumps.append(doc.dump)
            dates.append(str(doc.metadata.get("date", "")))
            urls.append(doc.url)
        if p.fuzzy:
            flush()
            sig = np.concatenate(sigs)
        else:
            sig = np.zeros((len(ids), p.num_perm), np.uint64)
        keys = band_keys(sig, p.bands, p.rows) if p.fuzzy else np.zeros((len(ids), 0), np.uint64)
        strings = {name: np.asarray(v, dtype=str) for name, v in
                   (("ids", ids), ("dumps", dumps), ("dates", dates), ("urls", urls))}
        _save(self.work / "sig" / f"{rank:05d}.npz", sig=sig, keys=keys, exact=np.asarray(exact, np.uint64), **strings)
        stats.extra["signatures"] += len(ids)

    def _load(self, *names: str) -> dict[str, np.ndarray]:
        parts = [np.load(self.work / "sig" / f"{r:05d}.npz") for r in range(self.tasks)]
        return {n: np.concatenate([part[n] for part in parts]) for n in names}

    # ---- phase 2 ----
    def _buckets(self, group: int, stats: TaskStats) -> None:
        p = self.params
        n_groups = self.phases()[1].n_tasks
        data = self._load("sig", "keys") if p.fuzzy else {"keys": np.zeros((0, 0), np.uint64)}
        edges = []
        for band in range(group, p.bands if p.fuzzy else 0, n_groups):
            pairs = candidate_pairs(data["keys"][:, band])
            stats.extra["candidate_pairs"] += len(pairs)
            edges.append(pairs)
        edges = np.unique(np.concatenate(edges), axis=0) if edges and sum(map(len, edges)) else np.zeros((0, 2), np.int64)
        if p.verify and len(edges):
            sig = data["sig"]
            est = (sig[edges[:, 0]] == sig[edges[:, 1]]).mean(axis=1)
            edges = edges[est >= p.threshold]
        stats.extra["edges"] += len(edges)
        _save_npy(self.work / "edges" / f"{group:03d}.npy", edges.astype(np.int64))

    # ---- phase 3 ----
    def _clusters(self, _rank: int, stats: TaskStats) -> None:
        p = self.params
        data = self._load("sig", "exact", "ids", "dumps", "dates", "urls")
        n = len(data["ids"])
        fuzzy = [np.load(f) for f in sorted((self.work / "edges").glob("*.npy"))]
        fuzzy = np.unique(np.concatenate(fuzzy), axis=0) if fuzzy and sum(map(len, fuzzy)) else np.zeros((0, 2), np.int64)
        exact = same_value_pairs(data["exact"]) if p.exact else np.zeros((0, 2), np.int64)
        labels = connected_components(n, np.concatenate([fuzzy, exact]))
        # The keeper of each cluster: largest dump id, then latest date, then the first document seen.
        order = np.lexsort((-np.arange(n), data["dates"], data["dumps"], labels))
        last_of_label = np.ones(n, bool)  # n may be 0: every document dropped upstream
        last_of_label[:-1] = labels[order][1:] != labels[order][:-1]
        keeper = np.full(n, -1, np.int64)
        keeper[labels[order][last_of_label]] = order[last_of_label]
        kept = keeper[labels]
        removed = np.flatnonzero(kept != np.arange(n))
        reason = np.where(data["exact"][removed] == data["exact"][kept[removed]], EXACT, FUZZY)
        sizes = np.cumsum([0] + [len(np.load(self.work / "sig" / f"{r:05d}.npz")["ids"]) for r in range(self.tasks)])
        for r in range(self.tasks):
            mine = (removed >= sizes[r]) & (removed < sizes[r + 1])
            _save_npy(self.work / "removed" / f"{r:05d}.npy", np.stack([removed[mine] - sizes[r], reason[mine]], 1))
        stats.extra.update(documents=n, clusters=int(len(np.unique(labels[removed]))), removed=len(removed),
                           removed_exact=int((reason == EXACT).sum()), removed_near=int((reason == FUZZY).sum()),
                           exact_pairs=len(exact), verified_pairs=len(fuzzy))
        ids, urls, sig = data["ids"], data["urls"], data["sig"]
        lines = [json.dumps({"a": urls[i], "b": urls[j], "jaccard_estimate": float((sig[i] == sig[j]).mean())}) + "\n"
                 for i, j in fuzzy]
        write_file(self.work / "edges.jsonl.gz", gzip.compress("".join(lines).encode(), 3))
        members: dict[int, list[int]] = {}
        for i in np.flatnonzero(np.isin(labels, labels[removed])):
            members.setdefault(int(labels[i]), []).append(int(i))
        lines = [json.dumps({"kept": urls[keeper[lab]], "members": [urls[i] for i in m], "ids": [ids[i] for i in m]}) + "\n"
                 for lab, m in members.items()]
        write_file(self.work / "clusters.jsonl.gz", gzip.compress("".join(lines).encode(), 3))

    # ---- phase 4 ----
    def _filter(self, rank: int, stats: TaskStats) -> None:
        removed = np.load(self.work / "removed" / f"{rank:05d}.npy")
        why = dict(zip(removed[:, 0].tolist(), removed[:, 1].tolist()))
        with ShardedWriter(self.output_dir, rank, self.output_format) as writer:
            for i, doc in enumerate(self.read(self.my_files(rank), stats)):
                stats.count_in(doc)
                if i in why:
                    stats.drop(self.params.name, REASONS[why[i]], doc)
                    continue
                stats.count_out(doc)
                writer.write(doc)


def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """Pairs (i < j) of documents whose band key is equal: all pairs in small buckets, a star in big ones.

    No Python loop per bucket: after sorting by (key, document), the pairs of the small buckets
    are (p, p + d) for d = 1 .. MAX_ALL_PAIRS - 1 wherever p + d is still in p's bucket.
    """
    order = np.lexsort((np.arange(len(keys)), keys))
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    lengths = np.diff(np.r_[starts, len(k)])
    size = np.repeat(lengths, lengths)                       # bucket size at each sorted position
    end = np.repeat(starts + lengths, lengths)               # one past the bucket's last position
    pos = np.arange(len(k))
    out = []
    small = np.flatnonzero((size > 1) & (size <= MAX_ALL_PAIRS))
    for d in range(1, int(size[small].max(initial=1))):
        p = small[small + d < end[small]]
        out.append(np.stack([order[p], order[p + d]], 1))
    big = starts[lengths > MAX_ALL_PAIRS]                    # star: first member with every other
    if big.size:
        p = pos[(size > MAX_ALL_PAIRS) & ~np.isin(pos, big)]
        first = np.repeat(big, lengths[lengths > MAX_ALL_PAIRS] - 1)
        out.append(np.stack([order[first], order[p]], 1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)


def same_value_pairs(values: np.ndarray) -> np.ndarray:
    """Star edges joining documents with equal values (exact-duplicate hashes)."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    same = np.flatnonzero(v[1:] == v[:-1])
    if not same.size:
        return np.zeros((0, 2), np.int64)
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    first = order[starts[np.searchsorted(starts, same + 1, side="right") - 1]]
    return np.stack([first, order[same + 1]], 1).astype(np.int64)


def _save(path: Path, **arrays: np.ndarray) -> None:
    with open_atomic(path) as f:
        np.savez(f, **arrays)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open_atomic(path) as f:
        np.save(f, array)
