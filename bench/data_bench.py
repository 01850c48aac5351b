"""lmforge's data pipeline vs datatrove, and lmforge's MinHash dedup vs datasketch's MinHashLSH.

The peers a user would pick instead: datatrove (Hugging Face's pipeline library) for the whole
pipeline, datasketch for MinHash LSH. Each peer runs the same work as lmforge, configured as its
own documentation recommends for speed; the settings of both sides are printed under the table.

- pipeline: WARC.gz demo crawl -> extraction -> language ID -> Gopher quality, Gopher repetition,
  C4, FineWeb rules (this order on both sides) -> MinHash dedup -> JSONL.gz, one task on one worker
  each side, so docs/s is also docs/s/core. Extraction: the same trafilatura options on both sides
  (`lmforge.data.extract.TRAFILATURA_OPTIONS`, passed to datatrove's `Trafilatura` step), and
  again with resiliparse (datatrove 0.10.1 has no resiliparse step: it gets a `BaseExtractor`
  subclass, its documented way to add an extractor, with `RESILIPARSE_OPTIONS`). Language ID:
  both call the same pycld2 function (datatrove's LanguageFilter downloads a fastText model).
  datatrove's English word tokenizer needs spaCy, which is not installed: it gets a whitespace
  tokenizer, the cheapest possible. MinHash: 5-grams, 64-bit hashes, lmforge's 18 bands x 7 rows
  on both sides (`MinhashConfig(num_buckets=18, hashes_per_bucket=7)`, 126 hash functions; ours
  `num_perm = 126` to match).
- dedup: documents (pages of the demo crawl generator, with exact and near duplicates) -> 128-hash
  MinHash over word 5-grams (character 5-grams for Chinese) -> LSH at threshold 0.7 with 18 bands
  x 7 rows -> candidates verified on their signatures (agreement >= 0.7) -> duplicate clusters.
  datasketch: `MinHash.bulk` with `hashfunc=xxhash.xxh32_intdigest` (its docs: a fast 32-bit
  hash in place of the default SHA-1), `MinHashLSH(weights=(0.2, 0.8))` (the same bands and rows
  as ours), `insertion_session`, `query`, `MinHash.jaccard`. Ours: `lmforge.data.dedup.minhash`
  and the bucket/verify/union-find code of the dedup stage, in memory. Two rows: from text (the
  same normalisation, shingling and hashing charged to both sides; datasketch needs its input
  shingled by the caller, here in plain Python) and from 32-bit shingle hashes (charged to
  neither: datasketch gets the xxh32 values with `hashfunc=int`, ours its own shingle hashes).

Repeats are interleaved (the order flips every repeat) and each ratio is the median of the
per-repeat ratios with its 95% interval (bench/stats.py; from 6 repeats on). ratio = lmforge / peer
as throughput (above 1: lmforge is faster).

    .venv/bin/python bench/data_bench.py                    # 600 pages, 3000 dedup documents, 9 repeats
    .venv/bin/python bench/data_bench.py --quick            # 200 pages, 1000 documents, 1 repeat
    .venv/bin/python bench/data_bench.py --markdown out.md  # also write the table and settings as Markdown
    .venv/bin/python bench/data_bench.py --part dedup       # the MinHash rows only (about 2 minutes)
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import xxhash
from stats import paired_ratio

from lmforge.data.dedup import minhash as mh
from lmforge.data.dedup.stage import MinHashDedup, candidate_pairs
from lmforge.data.dedup.unionfind import connected_components
from lmforge.data.extract import RESILIPARSE_OPTIONS, TRAFILATURA_OPTIONS
from lmforge.machine import cpu_name

DEDUP = MinHashDedup()  # lmforge's defaults: 5-grams, 128 hashes, t = 0.7, 18 bands x 7 rows
LSH_WEIGHTS = (DEDUP.fp_weight, DEDUP.fn_weight)  # the S-curve weights that give ours 18 x 7
PIPELINE_HASHES = DEDUP.bands * DEDUP.rows  # datatrove computes buckets x hashes-per-bucket hashes
EXTRACT_TIMEOUT = 5.0  # datatrove's per-document extraction timeout (default 1 s); none is reached
RULES = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


# ---- whole pipeline --------------------------------------------------------------------------


def lmforge_pipeline(crawl: Path, out: Path, backend: str) -> int:
    from lmforge.data.executors import run_pipeline
    from lmforge.data.pipeline import build_pipeline

    dedup = {"step": "minhash_dedup", "band_groups": 1, "num_perm": PIPELINE_HASHES, "bands": DEDUP.bands,
             "rows": DEDUP.rows}
    data = {"pipeline": {"input": str(crawl), "output": str(out), "input_format": "warc", "tasks": 1, "workers": 1},
            "stage": [{"name": "format", "steps": [{"step": "extract", "backend": backend}, {"step": "langid"},
                                                   {"step": "ids"}]},
                      {"name": "clean", "steps": [{"step": rule} for rule in RULES]},
                      {"name": "dedup", "steps": [dedup]}]}
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


def datatrove_extractor(backend: str):
    """datatrove's extraction step with lmforge's options for `backend`."""
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.extractors.base import BaseExtractor

    if backend == "trafilatura":
        options = dict(TRAFILATURA_OPTIONS)
        if options.pop("include_comments"):
            raise ValueError("datatrove's Trafilatura step always passes include_comments=False")
        return Trafilatura(favour_precision=options.pop("favor_precision"), deduplicate=options.pop("deduplicate"),
                           timeout=EXTRACT_TIMEOUT, **options)

    class Resiliparse(BaseExtractor):
        name = "Resiliparse"

        def __init__(self) -> None:
            super().__init__(EXTRACT_TIMEOUT)

        def extract(self, text: str) -> str:
            from resiliparse.extract.html2text import extract_plain_text

            return extract_plain_text(text, **RESILIPARSE_OPTIONS)

    return Resiliparse()


def datatrove_minhash_config():
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig

    # 64-bit hashes, as datatrove's examples recommend ("better precision -> fewer false positives")
    return MinhashConfig(n_grams=DEDUP.ngram, num_buckets=DEDUP.bands, hashes_per_bucket=DEDUP.rows,
                         hash_config=HashConfig(precision=64, hash_fc="xxhash"))


def datatrove_pipeline(crawl: Path, out: Path, backend: str) -> int:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, LambdaFilter)
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    from lmforge.data.langid import detect_language

    def langid(doc) -> bool:
        lang, score, _ = detect_language(doc.text)
        doc.metadata["language"] = lang
        return lang in ("en", "zh") and score >= 0.5

    cfg = datatrove_minhash_config()
    rules = {"gopher_quality": GopherQualityFilter, "gopher_repetition": GopherRepetitionFilter,
             "c4": C4QualityFilter, "fineweb": FineWebQualityFilter}
    logs = str(out / "logs")
    steps = [
        [WarcReader(str(crawl), glob_pattern="*.warc.gz"), datatrove_extractor(backend), LambdaFilter(langid),
         *(rules[r]() for r in RULES), JsonlWriter(str(out / "filtered"))],
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


PIPELINE_PAIRS = (("lmforge (trafilatura)", "datatrove (trafilatura)"),
                  ("lmforge (resiliparse)", "datatrove (resiliparse)"))


def pipeline_side(name: str):
    library, backend = name.rstrip(")").split(" (")
    run = lmforge_pipeline if library == "lmforge" else datatrove_pipeline
    return lambda crawl, out: run(crawl, out, backend)


# ---- MinHash dedup ---------------------------------------------------------------------------


def dedup_documents(n_docs: int) -> list[str]:
    from lmforge.data.democrawl import build_pages

    pages = build_pages(n_docs, seed=7)
    return ["\n".join(p.paragraphs) for p in pages]


CJK = re.compile("[\u3400-\u9fff\uf900-\ufaff]")  # the ideograph ranges of `mh.is_cjk_text`


def shingle_strings(text: str, n: int = DEDUP.ngram) -> list[bytes]:
    """The datasketch side's shingles: lmforge's normalisation and units (words, or characters when
    >= 30% of them are CJK ideographs), each n-gram as the UTF-8 bytes datasketch hashes."""
    norm = mh.normalize(text)
    chars = norm.replace(" ", "")
    units = list(chars) if len(CJK.findall(chars)) >= 0.3 * max(1, len(chars)) else norm.split()
    if len(units) < n:
        return [" ".join(units).encode()]
    return [" ".join(gram).encode() for gram in zip(*(units[i:] for i in range(n)))]


def lmforge_shingles(texts: list[str]) -> list[np.ndarray]:
    """lmforge's 32-bit shingle hashes of each text (`mh.texts_shingles`: all texts at once)."""
    return mh.texts_shingles(texts, DEDUP.ngram)[0]


def datasketch_shingles(text: str) -> list[int]:
    return [xxhash.xxh32_intdigest(s) for s in shingle_strings(text)]


def lmforge_dedup(docs: list, from_text: bool) -> set[tuple[int, int]]:
    a, b = mh.permutations(DEDUP.num_perm, DEDUP.seed)
    sig = mh.minhash_signatures(lmforge_shingles(docs) if from_text else docs, a, b)
    keys = mh.band_keys(sig, DEDUP.bands, DEDUP.rows)
    edges = np.unique(np.concatenate([candidate_pairs(keys[:, j]) for j in range(DEDUP.bands)]), axis=0)
    edges = edges[(sig[edges[:, 0]] == sig[edges[:, 1]]).mean(axis=1) >= DEDUP.threshold]
    return pairs_of(connected_components(len(docs), edges))


def datasketch_minhash_kwargs(from_text: bool) -> dict:
    # hashfunc: datasketch's default is SHA-1; its docs show a fast 32-bit hash (mmh3, farmhash) instead
    return {"num_perm": DEDUP.num_perm, "hashfunc": xxhash.xxh32_intdigest if from_text else int}


def datasketch_dedup(docs: list, from_text: bool) -> set[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    shingles = (shingle_strings(d) for d in docs) if from_text else docs
    minhashes = MinHash.bulk(shingles, **datasketch_minhash_kwargs(from_text))
    lsh = MinHashLSH(threshold=DEDUP.threshold, num_perm=DEDUP.num_perm, weights=LSH_WEIGHTS)
    with lsh.insertion_session() as session:
        for i, m in enumerate(minhashes):
            session.insert(i, m)
    edges = [(i, j) for i, m in enumerate(minhashes) for j in lsh.query(m)
             if i < j and m.jaccard(minhashes[j]) >= DEDUP.threshold]
    return pairs_of(connected_components(len(docs), np.array(edges, dtype=np.int64).reshape(-1, 2)))


def pairs_of(labels: np.ndarray) -> set[tuple[int, int]]:
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        groups.setdefault(lab, []).append(i)
    return {(a, b) for g in groups.values() for k, a in enumerate(g) for b in g[k + 1:]}


def near_duplicate_documents(n_sources: int, variants: int, seed: int = 11) -> list[str]:
    """The second set: passages of the embedded corpora (Shakespeare, People's Daily; 2 English to
    1 Chinese), each followed by `variants` copies with k random units (words; characters for
    Chinese) replaced by random units of the corpus, k uniform in [0, 12%] of the passage: a unit
    changes up to 5 shingles, so exact 5-gram Jaccard runs from 1 to well below the 0.7 threshold."""
    from lmforge import corpora

    rng = np.random.default_rng(seed)
    words = corpora.english_text(3_000_000).split()
    chars = [c for c in corpora.chinese_news_text(600_000) if not c.isspace()]
    docs = []
    for src in range(n_sources):
        units, sep = (chars, "") if src % 3 == 2 else (words, " ")
        length = int(rng.integers(150, 400))
        start = int(rng.integers(0, len(units) - length))
        base = units[start:start + length]
        docs.append(sep.join(base))
        for _ in range(variants):
            variant = list(base)
            for j in rng.choice(length, size=int(rng.integers(0, int(0.12 * length) + 1)), replace=False):
                variant[j] = units[int(rng.integers(0, len(units)))]
            docs.append(sep.join(variant))
    order = rng.permutation(len(docs))  # copies are not neighbours
    return [docs[i] for i in order]


def true_pairs(texts: list[str]) -> set[tuple[int, int]]:
    """All pairs (i < j) whose exact Jaccard of 5-gram sets (`shingle_strings`) is >= the threshold:
    intersections for all pairs at once as a sparse product of the document x shingle matrix."""
    from scipy import sparse

    ids: dict[bytes, int] = {}
    rows, cols = [], []
    for d, text in enumerate(texts):
        grams = {ids.setdefault(g, len(ids)) for g in shingle_strings(text)}
        rows += [d] * len(grams)
        cols += grams
    x = sparse.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(texts), len(ids)))
    inter = sparse.triu(x @ x.T, k=1).tocoo()
    size = np.asarray(x.sum(axis=1)).ravel()
    jaccard = inter.data / (size[inter.row] + size[inter.col] - inter.data)
    keep = jaccard >= DEDUP.threshold
    return set(zip(inter.row[keep].tolist(), inter.col[keep].tolist()))


def recall_precision(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> str:
    """recall: pairs with exact J >= t that end in one cluster; precision: pairs of a cluster with J >= t."""
    hits = len(found & truth)
    recall = hits / len(truth) if truth else float("nan")
    precision = hits / len(found) if found else float("nan")
    return f"{len(found)} pairs; recall {100 * recall:.1f}%, precision {100 * precision:.1f}%"


# ---- settings, printed under the table -------------------------------------------------------


def settings(args: argparse.Namespace, shingling: dict[str, float]) -> list[str]:
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=DEDUP.threshold, num_perm=DEDUP.num_perm, weights=LSH_WEIGHTS)
    if (lsh.b, lsh.r) != (DEDUP.bands, DEDUP.rows):
        raise RuntimeError(f"datasketch chose {lsh.b} x {lsh.r} bands, lmforge {DEDUP.bands} x {DEDUP.rows}")
    cfg = datatrove_minhash_config()
    options = ", ".join(f"{k}={v}" for k, v in TRAFILATURA_OPTIONS.items())
    traf = TRAFILATURA_OPTIONS
    resiliparse = ", ".join(f"{k}={v}" for k, v in RESILIPARSE_OPTIONS.items())
    pipeline = [
        f"pipeline, both sides: {args.pages} demo-crawl pages (seed 3), 1 task, 1 worker; extraction "
        f"trafilatura {version('trafilatura')} extract({options}) or resiliparse {version('resiliparse')} "
        f"extract_plain_text({resiliparse}); the same pycld2 language ID (en/zh, score >= 0.5); rules "
        f"{', '.join(RULES)} in this order, each library's defaults; MinHash {DEDUP.ngram}-grams, "
        f"{PIPELINE_HASHES} hashes, {DEDUP.bands} bands x {DEDUP.rows} rows, 64-bit",
        f"pipeline, lmforge: minhash_dedup(num_perm={PIPELINE_HASHES}, bands={DEDUP.bands}, rows={DEDUP.rows}, "
        f"threshold={DEDUP.threshold}, family={DEDUP.hash_family}), candidates verified, exact duplicates too; "
        "JSONL.gz at gzip level 3",
        f"pipeline, datatrove {version('datatrove')}: Trafilatura(favour_precision={traf['favor_precision']}, "
        f"deduplicate={traf['deduplicate']}, include_tables={traf['include_tables']}, "
        f"timeout={EXTRACT_TIMEOUT}) or a BaseExtractor calling resiliparse, in its extraction sandbox "
        f"(a child process); MinhashConfig({cfg}): signatures, {cfg.num_buckets} bucket tasks, clusters, "
        "filter; whitespace word tokenizer (spaCy absent); JSONL.gz at gzip level 9 (its default)",
    ]
    dedup = [
        f"dedup, both sides: {args.docs} documents, {DEDUP.num_perm} hashes, {DEDUP.ngram}-grams, "
        f"t={DEDUP.threshold}, {DEDUP.bands} bands x {DEDUP.rows} rows, candidates verified on signatures, "
        "the same union-find; recall and precision on pairs against exact 5-gram Jaccard >= t (all pairs, "
        "sparse product), a pair found when both documents end in one cluster",
        f"dedup, near-duplicate set: {args.docs // 5} passages of Shakespeare / People's Daily (2:1), "
        "150-400 units each, and 4 copies of each with 0-12% of the units replaced at random (seed 11)",
        f"dedup, lmforge: texts_shingles and minhash_signatures (numpy passes over all documents at once), "
        f"multiply-shift hash family; shingling alone {shingling.get('lmforge', 0):.2f} s",
        f"dedup, datasketch {version('datasketch')}: MinHash.bulk(num_perm={DEDUP.num_perm}, "
        "hashfunc=xxhash.xxh32_intdigest; from hashes: hashfunc=int), scheme affine32 (its default), "
        f"MinHashLSH(threshold={DEDUP.threshold}, num_perm={DEDUP.num_perm}, weights={LSH_WEIGHTS}) -> "
        f"{lsh.b} x {lsh.r}, insertion_session, query, MinHash.jaccard; shingling (Python n-grams + xxh32) "
        f"alone {shingling.get('datasketch', 0):.2f} s",
    ]
    return (pipeline if args.part != "dedup" else []) + (dedup if args.part != "pipeline" else [])


# ---- driver ----------------------------------------------------------------------------------


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def pipeline_rows(args: argparse.Namespace) -> list[tuple]:
    """Whole pipeline, lmforge vs datatrove, each extractor."""
    from lmforge.data.democrawl import write_demo_crawl

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        crawl = tmp / "crawl"
        # intact gzip members: datatrove's WARC reader (warcio) stops at a corrupt one (BadGzipFile)
        write_demo_crawl(crawl, args.pages, seed=3, damage_members=False)
        n_pages = sum(1 for line in (crawl / "truth.jsonl").open())
        order = [name for pair in PIPELINE_PAIRS for name in pair]
        times: dict[str, list[float]] = {name: [] for name in order}
        kept = {}
        for r in range(args.repeats):
            for name in (order if r % 2 == 0 else order[::-1]):
                out = tmp / f"run-{r}-{order.index(name)}"
                seconds, kept[name] = timed(pipeline_side(name), crawl, out)
                times[name].append(seconds)
                shutil.rmtree(out, ignore_errors=True)
        for ours, peer in PIPELINE_PAIRS:
            for name in (ours, peer):
                rows.append(("pipeline: WARC -> extract -> langid -> rules -> MinHash dedup", name,
                             f"{n_pages / statistics.median(times[name]):,.1f} docs/s/core", f"kept {kept[name]}",
                             paired_ratio(times[ours], times[peer]) if name == ours else "1.00"))
    return rows


def dedup_rows(args: argparse.Namespace, shingling: dict[str, float]) -> list[tuple]:
    """MinHash LSH, lmforge vs datasketch: the bench's texts from text and from shingle hashes, and
    the near-duplicate set from text; recall and precision against exact Jaccard."""
    rows = []
    texts = dedup_documents(args.docs)
    near = near_duplicate_documents(args.docs // 5, 4)
    truth = {"bench": true_pairs(texts), "near": true_pairs(near)}
    shingling["lmforge"], ours_shingles = timed(lmforge_shingles, texts)
    shingling["datasketch"], their_shingles = timed(lambda: [datasketch_shingles(t) for t in texts])
    inputs_of = {"from text": (texts, texts), "from 32-bit shingle hashes": (ours_shingles, their_shingles),
                 "from text, near-duplicate set": (near, near)}
    for label, inputs in inputs_of.items():
        from_text = label != "from 32-bit shingle hashes"
        docs_of_label = inputs[0] if from_text else texts
        dtimes: dict[str, list[float]] = {"lmforge": [], "datasketch": []}
        found = {}
        for r in range(args.repeats):
            for name in (("lmforge", "datasketch") if r % 2 == 0 else ("datasketch", "lmforge")):
                fn, docs = (lmforge_dedup, inputs[0]) if name == "lmforge" else (datasketch_dedup, inputs[1])
                seconds, found[name] = timed(fn, docs, from_text)
                dtimes[name].append(seconds)
        for name in ("lmforge", "datasketch"):
            t = statistics.median(dtimes[name])
            rows.append((f"MinHash LSH dedup {label}, {len(docs_of_label)} docs, {DEDUP.num_perm} hashes, "
                         f"{DEDUP.ngram}-grams, t={DEDUP.threshold}", name,
                         f"{t:.2f} s ({len(docs_of_label) / t:,.0f} docs/s)",
                         recall_precision(found[name], truth["near" if "near" in label else "bench"]),
                         paired_ratio(dtimes["lmforge"], dtimes["datasketch"]) if name == "lmforge" else "1.00"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown")
    parser.add_argument("--part", choices=("all", "pipeline", "dedup"), default="all")
    args = parser.parse_args()
    if args.quick:
        args.pages, args.docs, args.repeats = 200, 1000, 1
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from loguru import logger

    logger.remove()
    patch_datatrove_tokenizer()
    from lmforge.data.extract import extract_main_text
    from lmforge.data.langid import detect_language

    # import everything both sides use before any timing (trafilatura alone takes ~1 s to import)
    for backend in ("trafilatura", "resiliparse"):
        extract_main_text("<html><body><p>warm up</p></body></html>", backend)
    detect_language("warm up")
    mh.normalize("warm up")  # both dedup sides normalise with it; it builds its table on the first call
    import datasketch  # noqa: F401
    import datatrove.pipeline.dedup  # noqa: F401
    import datatrove.pipeline.extractors  # noqa: F401
    import datatrove.pipeline.filters  # noqa: F401

    shingling: dict[str, float] = {}
    rows = pipeline_rows(args) if args.part != "dedup" else []
    rows += dedup_rows(args, shingling) if args.part != "pipeline" else []

    header = ("benchmark", "implementation", "throughput", "output", "ratio (lmforge/peer) [95% CI]")
    notes = settings(args, shingling)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"{args.pages if args.part != 'dedup' else 0} pages, {args.repeats} repeats (medians; ratio = median of the per-repeat ratios)")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    print("\n".join(notes))
    if args.markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
        lines += [""] + [f"- {n}" for n in notes]
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
