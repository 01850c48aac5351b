"""The data half of `lmforge run`: crawl -> curation -> tokenizer -> shards (InternLM2 section 3.1).

    crawl      the demo crawl: WARC.gz pages from the embedded corpora with planted bad cases
               (`lmforge.data.democrawl`); skipped when the recipe names its own input
    data       the WanJuan-CC pipeline of a data recipe (format, clean, dedup, safe, quality, and
               the long-context branch) run by `lmforge.data` on the crawl; its funnel for the report
    tokenizer  a byte-level BPE trained on the curated text (plus any embedded corpora named in
               [tokenizer]), with its compression on held-out English and Chinese
    shards     the curated documents, BOS + tokens + EOS, as packed shards: train/, val/ (held out
               by document), and long/ for the long-context stage (the curated documents, the
               long-context branch, and synthetic passkey documents at the long stage's length)

Each function takes its settings and an output folder and returns a JSON-able summary, which
`lifecycle.stage.RunStages` records and the report reads.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from lmforge.config import RecipeError, read_toml
from lmforge.recipe import DataSection, TokenizerSection

if TYPE_CHECKING:
    from lmforge.data.pipeline import Pipeline

LANGS = ("en", "zh")


def crawl(section: DataSection, seed: int, folder: Path) -> dict:
    from lmforge.data.democrawl import write_demo_crawl

    counts = write_demo_crawl(folder, section.crawl_pages, seed)
    return {"pages": sum(counts.values()), "kinds": counts, "input": str(folder)}


def input_config(section: DataSection) -> dict:
    """The part of the data stage's key that [data] input sets: the pattern, the format, and every
    file it matches now with its size and modification time."""
    from lmforge.data.readers import input_fingerprint, list_inputs

    files = input_fingerprint(list_inputs(section.input, section.input_format))
    return {"input": section.input, "format": section.input_format, "files": files}


def embedded_corpus(name: str, folder: Path) -> dict:
    """The `data` stage for `[data] corpus`: the corpus's train and held-out texts as documents (one per
    play), written as JSONL under train/ and val/; no curation (the texts are clean already)."""
    import json

    from lmforge import corpora
    from lmforge.atomic import write_atomic

    if name != "shakespeare":
        raise RecipeError(f"data.corpus = {name!r}: expected one of {', '.join(corpora.EMBEDDED_CORPORA)}")
    counts = {}
    for split, part in (("train", "train"), ("val", "heldout")):
        plays = corpora.shakespeare_plays(part)
        (folder / split).mkdir(parents=True, exist_ok=True)
        rows = [json.dumps({"id": play, "text": text, "metadata": {"language": "en", "source": "shakespeare"}},
                           ensure_ascii=False) for play, text in plays.items()]
        write_atomic(folder / split / "documents.jsonl", "\n".join(rows) + "\n")
        counts[split] = {"documents": len(plays), "chars": sum(map(len, plays.values())), "texts": list(plays)}
    return {"corpus": name, "curated": "train", "val": "val", "branches": [], "splits": counts}


def resolve_pipeline(name: str, recipe_dir: Path | None) -> Path:
    """A data recipe path: as given, else next to the run recipe."""
    candidates = [Path(name)] + ([recipe_dir / name] if recipe_dir is not None else [])
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"data.pipeline = {name!r}: no such data recipe (looked in "
                            f"{', '.join(str(c) for c in candidates)}); see recipes/data-demo.toml")


def build_curation(section: DataSection, pipeline_path: Path, input_dir: str, input_format: str,
                   folder: Path) -> tuple[Pipeline, list[str]]:
    """The data recipe's document stages on the input, writing to `folder` (nothing runs yet): the
    Pipeline and the names of its side branches."""
    from lmforge.data.pipeline import build_pipeline, step_class

    data, where = read_toml(pipeline_path, example="recipes/data-demo.toml")
    data["pipeline"] = {**data.get("pipeline", {}), "input": input_dir, "input_format": input_format,
                        "output": str(folder), "tasks": section.tasks, "workers": section.workers,
                        "executor": section.executor}
    # Token shards come later, from the run's own tokenizer: leave out stages whose steps write them.
    pipeline_stages = [s for s in data.get("stage", [])
                       if not any(isinstance(st, dict) and isinstance(st.get("step"), str)
                                  and step_class(st["step"], where, "stage.steps").sink for st in s.get("steps", []))]
    data["stage"] = pipeline_stages
    # A stage that names its `input` is a side branch (the long-context selection); the curated
    # corpus is the last stage of the main line.
    return build_pipeline(data, where), [s["name"] for s in pipeline_stages if "input" in s]


def curate(section: DataSection, pipeline_path: Path, input_dir: str, input_format: str, folder: Path,
           console: Console) -> dict:
    """Run the data recipe's document stages on the input; returns the funnel and the output stages."""
    from lmforge.data.executors import run_pipeline
    from lmforge.data.report import build_report, funnel_console_table

    pipeline, branches = build_curation(section, pipeline_path, input_dir, input_format, folder)
    run_pipeline(pipeline, log=lambda msg: console.print(f"  {msg}", markup=False, highlight=False))
    main_stages = [s.name for s in pipeline.stages if s.name not in branches]
    report = build_report(folder)
    console.print(funnel_console_table(report["funnel"], f"data: {pipeline_path.name} on {input_dir}"))
    return {"recipe": str(pipeline_path), "curated": main_stages[-1], "branches": branches,
            "funnel": report["funnel"], "truth": report.get("truth")}


def read_documents(stage_dir: Path) -> list:
    """The documents a pipeline stage wrote, in file order."""
    from lmforge.data.readers import READERS, list_inputs
    from lmforge.data.step import TaskStats

    reader, stats = READERS["jsonl"](), TaskStats(stage="read", rank=0)
    docs = [d for path in list_inputs(stage_dir, "jsonl") for d in reader.read(path, stats)]
    if not docs:
        raise RecipeError(f"{stage_dir}: the data stage kept no documents; loosen the pipeline's filters "
                          "or give it more input (data.crawl_pages, data.input)")
    return docs


def train_tokenizer(section: TokenizerSection, documents: list[str], heldout: dict[str, str], folder: Path,
                    console: Console) -> dict:
    """A byte-level BPE on the curated documents and the named corpora; compression per language."""
    from lmforge.lifecycle.texts import corpus_texts
    from lmforge.tokenizer import IMAGE_TOKENS, bytes_per_token, train_bpe

    texts = corpus_texts(section)
    sources = list(texts.values()) + (["\n\n".join(documents)] if section.curated else [])
    start = time.perf_counter()
    tok = train_bpe(sources, vocab_size=section.vocab_size, min_frequency=section.min_frequency,
                    extra_special_tokens=IMAGE_TOKENS if section.image_tokens else ())
    seconds = time.perf_counter() - start
    tok.save(folder)
    measured = heldout or texts  # held-out text when the caller has some, else the training corpora
    compression = {name: round(bytes_per_token(tok, text[:200_000]), 3) for name, text in measured.items() if text}
    table = Table(title=f"tokenizer: {tok.vocab_size} tokens, trained in {seconds:.1f}s -> {folder}")
    table.add_column("held-out text" if heldout else "corpus")
    table.add_column("bytes / token", justify="right")
    for lang, value in compression.items():
        table.add_row(lang, f"{value:.2f}")
    console.print(table)
    return {"vocab_size": tok.vocab_size, "train_chars": sum(map(len, sources)), "seconds": round(seconds, 2),
            "bytes_per_token": compression, "corpora": list(texts)}


def texts_by_language(docs: list) -> dict[str, str]:
    """The documents of each language in LANGS joined into one text (blank-line separated)."""
    return {lang: "\n\n".join(d.text for d in docs if d.language == lang) for lang in LANGS}


def split_documents(docs: list, val_share: float, seed: int) -> tuple[list, list]:
    """Shuffle and hold out `val_share` of the documents (at least one) for validation."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    n_val = max(1, int(len(docs) * val_share))
    return docs[n_val:], docs[:n_val]


def write_shards(tokenizer_dir: Path, train_docs: list, val_docs: list, long_docs: list, section: DataSection,
                 long_len: int | None, seed: int, folder: Path, console: Console, n_shards: int = 4,
                 short_len: int | None = None) -> dict:
    """Token shards train/, val/ and (with a long stage) long/; token counts per language, pass-key
    documents counted as "passkey"."""
    from lmforge.eval.passkey import passkey_document
    from lmforge.shards import write_shard
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer_dir)
    counts: dict[str, dict[str, int]] = {}  # split -> language -> tokens
    chars: dict[str, dict[str, int]] = {}   # split -> language -> characters

    def encode(docs: list, split: str) -> list[list[int]]:
        ids = [[tok.bos_id, *row, tok.eos_id] for row in tok.encode_batch([d.text for d in docs])]
        per_lang, per_lang_chars = counts.setdefault(split, {}), chars.setdefault(split, {})
        for d, row in zip(docs, ids):
            per_lang[d.language] = per_lang.get(d.language, 0) + len(row)
            per_lang_chars[d.language] = per_lang_chars.get(d.language, 0) + len(d.text)
        return ids

    train_ids = encode(train_docs, "train")
    if section.short_passkey_docs and short_len:
        # Keys of 5 to 20 digits (NIAH asks for 5) give each document more to copy, and lengths from 48
        # tokens, under the ~100-145 that the header, needle and question alone take, leave nine in ten
        # without filler, the needle just before the question. On these the copy circuit that retrieval
        # needs forms sooner (docs/training.md, pass keys); the long stage carries it to distance.
        rng = random.Random(seed + 1)
        docs = [passkey_document(tok, rng.randint(min(48, short_len), short_len), rng, digits=rng.randint(5, 20))
                for _ in range(section.short_passkey_docs)]
        short_ids = [[tok.bos_id, *tok.encode(t), tok.eos_id] for t in docs]
        counts["train"]["passkey"] = sum(map(len, short_ids))
        train_ids += short_ids
        random.Random(seed).shuffle(train_ids)
    for i in range(n_shards):
        write_shard(folder / "train", f"shard_{i:05d}", train_ids[i::n_shards], tok.vocab_size)
    write_shard(folder / "val", "shard_00000", encode(val_docs, "val"), tok.vocab_size)
    summary = {"docs": {"train": len(train_ids), "val": len(val_docs)}, "tokens": counts, "chars": chars}
    if long_len:
        # The long stage reads everything the short one did, plus the long-context selection and
        # the pass-key documents.
        # Pass-key documents of the stage's full length would almost never sit whole in one packed row
        # (the loader cuts the stream every long_len tokens), leaving the question in one row and the
        # needle in another: their lengths are drawn from long_len / 8 .. long_len instead, so that
        # about half lie whole in a row, from a short distance between needle and question to the full one.
        rng = random.Random(seed)
        shortest = min(long_len, max(64, long_len // 8))
        passkeys = [passkey_document(tok, rng.randint(shortest, long_len), rng) for _ in range(section.passkey_docs)]
        passkey_ids = [[tok.bos_id, *tok.encode(t), tok.eos_id] for t in passkeys]
        long_ids = train_ids + encode(long_docs, "long") + passkey_ids
        long_counts = counts["long"]
        for lang, n in counts["train"].items():
            long_counts[lang] = long_counts.get(lang, 0) + n
        long_counts["passkey"] = long_counts.get("passkey", 0) + sum(map(len, passkey_ids))
        random.Random(seed).shuffle(long_ids)
        write_shard(folder / "long", "shard_00000", long_ids, tok.vocab_size)
        summary["docs"]["long"] = len(long_ids)
    for lang, text in texts_by_language(val_docs).items():  # held-out text per language, for perplexity
        if text:
            (folder / f"val_{lang}.txt").write_text(text, encoding="utf-8")
    table = Table(title=f"shards -> {folder}")
    for col in ("split", "documents", *LANGS, "other"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, per_lang in counts.items():
        other = sum(n for lang, n in per_lang.items() if lang not in LANGS)
        table.add_row(split, str(summary["docs"].get(split, "-")), *[f"{per_lang.get(lang, 0):,}" for lang in LANGS],
                      f"{other:,}")
    console.print(table)
    return summary
