"""lmforge's data pipeline vs datatrove, and lmforge's MinHash dedup vs datasketch's MinHashLSH.

The peers a user would pick instead: datatrove (Hugging Face's pipeline library) for the whole
pipeline, datasketch for MinHash LSH. In one run, on the same input, single core each:

- pipeline: WARC.gz demo crawl -> trafilatura extraction -> pycld2 language ID (both sides call the
  same function; datatrove's own LanguageFilter downloads a fastText model) -> Gopher quality +
  repetition, C4, FineWeb rules -> MinHash dedup (5-grams; datatrove's 4 stages with its defaults,
  14 buckets x 8 hashes; ours 128 hashes, bands/rows chosen for 0.7) -> JSONL.gz. Both run one
  task on one worker, so docs/s is also docs/s/core. datatrove's English word tokenizer needs
  spaCy, which is not installed: it gets a whitespace tokenizer, the cheapest possible, so its side
  of the rule stage is if anything faster than it would be. A second lmforge row uses resiliparse,
  the faster extractor.
- dedup: documents (pages of the demo crawl generator, with exact and near duplicates) -> 128-hash
  signatures over word 5-grams (character 5-grams for Chinese) -> LSH at threshold 0.7 ->
  duplicate clusters. datasketch: `MinHash.update_batch` + `MinHashLSH.insert` + `query`. Ours:
  `lmforge.data.dedup.minhash` + the bucket/verify/union-find code of the dedup stage, in memory.

Repeats are interleaved (ours, theirs, theirs, ours) and the median is reported. ratio = lmforge /
peer as throughput (above 1: lmforge is faster).

    .venv/bin/python bench/data_bench.py                    # 600 pages, 3000 dedup documents
    .venv/bin/python bench/data_bench.py --quick            # 200 pages, 1000 documents, 1 repeat
    .venv/bin/python bench/data_bench.py --markdown out.md  # also write the table as Markdown
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lmforge.machine import cpu_name
from lmforge.data.dedup import minhash as mh
from lmforge.data.dedup.stage import candidate_pairs
from lmforge.data.dedup.unionfind import connected_components


# ---- whole pipeline --------------------------------------------------------------------------


def lmforge_pipeline(crawl: Path, out: Path, backend: str) -> int:
    from lmforge.data.executors import run_pipeline
    from lmforge.data.pipeline import build_pipeline

    data = {"pipeline": {"input": str(crawl), "output": str(out), "input_format": "warc", "tasks": 1, "workers": 1},
            "stage": [{"name": "format", "steps": [{"step": "extract", "backend": backend}, {"step": "langid"},
                                                   {"step": "ids"}]},
                      {"name": "clean", "steps": [{"step": "gopher_quality"}, {"step": "gopher_repetition"},
                                                  {"step": "c4"}, {"step": "fineweb"}]},
                      {"name": "dedup", "steps": [{"step": "minhash_dedup", "band_groups": 1}]}]}
    run_pipeline(build_pipeline(data, "bench"), log=lambda *_: None)
    return sum(1 for f in (out / "dedup").glob("*.jsonl.gz") for _ in gzip.open(f, "rt"))


def patch_datatrove_tokenizer() -> None:
    import datatrove.utils.word_tokenizers as wt

    from lmforge.data.text import sentences

    class Whitespace:
        def word_tokenize(self, text):
            return text.split()

        def sent_tokenize(self, text):
            return sentences(text)

        def span_tokenize(self, text):
            spans, start = [], 0
            for s in sentences(text):
                i = text.find(s, start)
                spans.append((i, i + len(s)))
                start = i + len(s)
            return spans

    wt.load_word_tokenizer = lambda language: Whitespace()


def datatrove_pipeline(crawl: Path, out: Path) -> int:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, LambdaFilter)
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    from lmforge.data.langid import detect_language

    def langid(doc) -> bool:
        lang, score, _ = detect_language(doc.text)
        doc.metadata["language"] = lang
        return lang in ("en", "zh") and score >= 0.5

    cfg = MinhashConfig()  # datatrove's defaults: 5-grams, 14 buckets x 8 hashes, xxhash 64-bit
    logs = str(out / "logs")
    steps = [
        [WarcReader(str(crawl), glob_pattern="*.warc.gz"), Trafilatura(timeout=5.0), LambdaFilter(langid),
         GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter(),
         JsonlWriter(str(out / "filtered"))],
        [JsonlReader(str(out / "filtered")), MinhashDedupSignature(str(out / "sigs"), config=cfg)],
        [MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=cfg)],
        [MinhashDedupCluster(str(out / "buckets"), str(out / "remove_ids"), config=cfg)],
        [JsonlReader(str(out / "filtered")), MinhashDedupFilter(str(out / "remove_ids")),
         JsonlWriter(str(out / "deduped"))],
    ]
    tasks = [1, 1, cfg.num_buckets, 1, 1]
    for i, (pipeline, n) in enumerate(zip(steps, tasks)):
        LocalPipelineExecutor(pipeline=pipeline, tasks=n, workers=1, logging_dir=f"{logs}/{i}",
                              skip_completed=False).run()
    return sum(1 for f in (out / "deduped").glob("*.jsonl.gz") for _ in gzip.open(f, "rt"))


# ---- MinHash dedup ---------------------------------------------------------------------------


def dedup_documents(n_docs: int) -> list[str]:
    from lmforge.data.democrawl import build_pages

    pages = build_pages(n_docs, seed=7)
    return ["\n".join(p.paragraphs) for p in pages]


def shingle_strings(text: str, n: int = 5) -> list[bytes]:
    norm = mh.normalize(text)
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in norm) >= 0.3 * max(1, len(norm.replace(" ", "")))
    units = [c for c in norm if c != " "] if cjk else norm.split()
    if len(units) < n:
        return [" ".join(units).encode()]
    return [" ".join(units[i:i + n]).encode() for i in range(len(units) - n + 1)]


def lmforge_dedup(texts: list[str], threshold: float = 0.7) -> set[tuple[int, int]]:
    a, b = mh.permutations(128)
    sig = np.stack([mh.text_signature(t, a, b)[0] for t in texts])
    bands, rows = mh.optimal_bands(threshold, 128, 0.2, 0.8)
    keys = mh.band_keys(sig, bands, rows)
    edges = np.unique(np.concatenate([candidate_pairs(keys[:, j]) for j in range(bands)]), axis=0)
    edges = edges[(sig[edges[:, 0]] == sig[edges[:, 1]]).mean(axis=1) >= threshold]
    labels = connected_components(len(texts), edges)
    return pairs_of(labels)


def datasketch_dedup(texts: list[str], threshold: float = 0.7) -> set[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    sigs = []
    for i, t in enumerate(texts):
        m = MinHash(num_perm=128)
        m.update_batch(shingle_strings(t))
        lsh.insert(i, m)
        sigs.append(m)
    edges = np.array([(i, j) for i, m in enumerate(sigs) for j in lsh.query(m) if i < j], dtype=np.int64).reshape(-1, 2)
    return pairs_of(connected_components(len(texts), edges))


def pairs_of(labels: np.ndarray) -> set[tuple[int, int]]:
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        groups.setdefault(lab, []).append(i)
    return {(a, b) for g in groups.values() for k, a in enumerate(g) for b in g[k + 1:]}


def exact_jaccard(texts: list[str], pairs: set[tuple[int, int]]) -> float:
    """Share of the reported pairs whose exact 5-gram Jaccard is >= 0.7 (a precision check)."""
    if not pairs:
        return float("nan")
    sets = {}
    ok = 0
    for i, j in pairs:
        for k in (i, j):
            if k not in sets:
                sets[k] = set(shingle_strings(texts[k]))
        ok += len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= 0.7
    return ok / len(pairs)


# ---- driver ----------------------------------------------------------------------------------


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    if args.quick:
        args.pages, args.docs, args.repeats = 200, 1000, 1
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from loguru import logger

    logger.remove()
    patch_datatrove_tokenizer()
    from lmforge.data.democrawl import write_demo_crawl
    from lmforge.data.extract import extract_main_text
    from lmforge.data.langid import detect_language

    # import everything both sides use before any timing (trafilatura alone takes ~1 s to import)
    for backend in ("trafilatura", "resiliparse"):
        extract_main_text("<html><body><p>warm up</p></body></html>", backend)
    detect_language("warm up")
    import datatrove.pipeline.dedup  # noqa: F401
    import datatrove.pipeline.extractors  # noqa: F401
    import datatrove.pipeline.filters  # noqa: F401

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        crawl = tmp / "crawl"
        write_demo_crawl(crawl, args.pages, seed=3)
        n_pages = sum(1 for line in (crawl / "truth.jsonl").open())
        times: dict[str, list[float]] = {"lmforge (trafilatura)": [], "lmforge (resiliparse)": [], "datatrove": []}
        kept = {}
        order = ["lmforge (trafilatura)", "datatrove", "lmforge (resiliparse)"]
        for r in range(args.repeats):
            for name in (order if r % 2 == 0 else order[::-1]):
                out = tmp / f"{name.split()[0]}-{r}-{len(times[name])}".replace("(", "")
                fn = datatrove_pipeline if name == "datatrove" else (
                    lambda c, o, b=name.split("(")[1][:-1]: lmforge_pipeline(c, o, b))
                seconds, kept[name] = timed(fn, crawl, out)
                times[name].append(seconds)
                shutil.rmtree(out, ignore_errors=True)
        base = statistics.median(times["datatrove"])
        for name in ("lmforge (trafilatura)", "lmforge (resiliparse)", "datatrove"):
            t = statistics.median(times[name])
            rows.append(("pipeline: WARC -> extract -> langid -> rules -> MinHash dedup", name,
                         f"{n_pages / t:,.1f} docs/s/core", f"kept {kept[name]}", f"{base / t:.2f}x"))

    texts = dedup_documents(args.docs)
    dtimes: dict[str, list[float]] = {"lmforge": [], "datasketch": []}
    found = {}
    for r in range(args.repeats):
        for name in (("lmforge", "datasketch") if r % 2 == 0 else ("datasketch", "lmforge")):
            seconds, found[name] = timed(lmforge_dedup if name == "lmforge" else datasketch_dedup, texts)
            dtimes[name].append(seconds)
    base = statistics.median(dtimes["datasketch"])
    for name in ("lmforge", "datasketch"):
        t = statistics.median(dtimes[name])
        rows.append((f"MinHash LSH dedup, {len(texts)} docs, 128 hashes, 5-grams, t=0.7", name,
                     f"{t:.2f} s ({len(texts) / t:,.0f} docs/s)",
                     f"{len(found[name])} pairs, {100 * exact_jaccard(texts, found[name]):.0f}% with J>=0.7",
                     f"{base / t:.2f}x"))

    header = ("benchmark", "implementation", "throughput", "output", "ratio (lmforge/peer)")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, "
          f"{args.pages} pages, {args.repeats} repeats (median)")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    if args.markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
