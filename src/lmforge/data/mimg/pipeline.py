"""`lmforge data mimg`: documents in, long-context multi-hop conversations out, through the four MIMG agents.

Paper: LongMIT / MIMG, arXiv 2409.01893 (Multi-agent Interactive Multi-hop Generation);
docs/papers.md §8. The whole method, top to bottom, is `generate_mimg`:

    documents  -> near-duplicates out (5-gram Jaccard >= 0.75)               graph.near_duplicates
               -> embeddings, kNN graph, groups of neighbouring documents     embed, graph
    chunks     -> near-duplicate chunks out (the same test)                   graph.near_duplicates
               -> single-hop question agent: <= 3 questions per chunk        agents.questions_prompt
    questions  -> verification agent: needs outside context? answer, simplify agents.standalone/answer/simplify
               -> single-hop grounding score                                  scoring.grounding
    QAs        -> multiple-question sampling within / across documents        sampling.sample_hops
    samples    -> multi-hop merger agent, pair by pair                        agents.merge_prompt
               -> multi-hop scores: grounding, hop coverage (and a judge)     scoring
               -> conversations: the group's documents + question -> answer  JSONL, the SFT format

Each agent stage is one `_ask` over all its items: the prompts go to the endpoint `concurrency` at
a time (stage after stage rather than item by item, so the endpoint always has a full batch), and
each answer is parsed; an item whose answer cannot be used is counted under the stage with its
reason and goes no further. Every call is cached (client.py), so a rerun, or a run resumed after a
crash, asks only what was not answered yet and then writes the same output.

The output file (written atomically) has one record per multi-hop question, in the OpenAI
messages shape that `lmforge.align.conversations.read_conversations` reads, with what it was made
from under "mimg"; `<out stem>.stats.json` has the counts of every stage.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lmforge.atomic import write_atomic, write_json
from lmforge.data.document import Document
from lmforge.data.mimg import agents, scoring
from lmforge.data.mimg.client import Client
from lmforge.data.mimg.embed import embed_texts
from lmforge.data.mimg.graph import approx_tokens, chunk_text, document_groups, knn, near_duplicates
from lmforge.data.mimg.sampling import sample_hops
from lmforge.data.mimg.stats import Stats

SYSTEM_PROMPT = ("Answer the question based on the given passages. Give the reasoning through every passage "
                 "you use, then the answer.")


@dataclass
class MimgOptions:
    """The sizes and thresholds of a run (the CLI's options, with the same names)."""

    chunk_tokens: int = 2000          # ~2k-token chunks, one question call each
    questions_per_chunk: int = 3
    docs_per_sample: int = 4          # documents in one long context (a walk over the kNN graph)
    max_context_tokens: int = 32000   # and at most this many approximate tokens of them
    neighbours: int = 8               # k of the kNN graph
    dedup_threshold: float = 0.75     # 5-gram Jaccard at which a document is a near-duplicate
    hops: int = 2                     # QAs merged into one question
    seeds_per_group: int = 4          # seed QAs per document group (each gives an intra and an inter sample)
    embeddings: str = "local"         # "local" (hashed TF-IDF) or "endpoint" (/v1/embeddings)
    embedding_model: str = ""
    min_grounding: float = 0.5        # share of an answer's content words found in its sources
    min_coverage: float = 1.0         # share of the hops a merged QA must use
    judge: bool = False               # also ask the model to rate each multi-hop QA 1-10
    min_judge: float = 6.0
    max_docs: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hops < 2:
            raise ValueError(f"hops={self.hops}: a multi-hop question merges at least 2 QAs")
        if not 0 < self.dedup_threshold <= 1:
            raise ValueError(f"dedup_threshold={self.dedup_threshold}: a Jaccard similarity in (0, 1]")


@dataclass
class Chunk:
    group: int
    doc: int          # index into the kept documents
    index: int        # chunk number within the document
    text: str


@dataclass
class QA:
    chunk: Chunk
    question: str
    answer: str = ""
    short: str = ""
    scores: dict = field(default_factory=dict)


@dataclass
class MultiHop:
    group: int
    kind: str
    hops: list[QA]
    question: str = ""
    answer: str = ""
    scores: dict = field(default_factory=dict)


def read_documents(inputs: list[str], fmt: str = "jsonl") -> tuple[list[Document], list[str]]:
    """(documents with text, reader errors as 'file:offset: error') of JSONL / Parquet / text inputs,
    the formats `lmforge data` reads and writes (a folder of curated shards works as it is)."""
    from lmforge.data.readers import READERS, require_inputs
    from lmforge.data.step import TaskStats

    stats, docs = TaskStats("mimg", 0), []
    for path in inputs:
        for file in require_inputs(path, fmt, key="mimg input"):
            docs += [d for d in READERS[fmt]().read(file, stats) if d.text.strip()]
    return docs, [f"{e['file']}:{e['offset']}: {e['error']}" for e in stats.errors]


def _ask(client: Client, stats: Stats, stage: str, items: list, prompt, parse,
         response_format: dict | None = None) -> list[tuple[object, object]]:
    """(item, parsed value) for each item whose answer parsed; the others counted under `stage`."""
    answers = client.chat_many([prompt(item) for item in items], response_format)
    kept, skipped = [], Counter()
    for item, (text, failure) in zip(items, answers):
        value, reason = (None, f"request failed: {failure}") if text is None else parse(text)
        if value is None:
            skipped[reason] += 1
        else:
            kept.append((item, value))
    stats.record(stage, len(items), len(kept), skipped)
    return kept


def _deduplicated(stats: Stats, stage: str, items: list, threshold: float) -> list:
    """The items (with a `text`) that are not near-duplicates of an earlier one; the others counted."""
    dropped = near_duplicates([item.text for item in items], threshold)
    stats.record(stage, len(items), len(items) - len(dropped),
                 Counter({f"near-duplicate (Jaccard >= {threshold:g})": len(dropped)}) if dropped else None)
    return [item for i, item in enumerate(items) if i not in dropped]


def _passing(stats: Stats, stage: str, items: list, minimum: dict[str, float]) -> list:
    """The items whose `scores` meet every minimum; the others counted under `stage` by the score they failed."""
    kept, skipped = [], Counter()
    for item in items:
        reason = scoring.failed_threshold(item.scores, minimum)
        if reason:
            skipped[reason] += 1
        else:
            kept.append(item)
    stats.record(stage, len(items), len(kept), skipped)
    return kept


def _doc_name(doc: Document, index: int) -> str:
    if doc.id:
        return doc.id
    source = doc.metadata.get("source")
    return f"{source}:{doc.metadata.get('offset', 0)}" if source else str(index)


def build_groups(docs: list[Document], opts: MimgOptions, client: Client,
                 stats: Stats) -> tuple[list[Document], list[list[int]]]:
    """(kept documents, groups of their indices): dedup, embed, kNN, walk."""
    kept = _deduplicated(stats, "dedup: documents", docs, opts.dedup_threshold)
    vectors = embed_texts([d.text for d in kept], opts.embeddings, client, opts.embedding_model)
    neighbours, _ = knn(vectors, opts.neighbours)
    tokens = [approx_tokens(d.text) for d in kept]
    too_long = [i for i, n in enumerate(tokens) if n > opts.max_context_tokens]
    groups = [g for g in document_groups(neighbours, tokens, opts.docs_per_sample, opts.max_context_tokens)
              if g[0] not in too_long]
    stats.record("groups", len(kept), sum(map(len, groups)),
                 Counter({"document longer than max_context_tokens": len(too_long)}) if too_long else None)
    return kept, groups


def single_hop_qas(docs: list[Document], groups: list[list[int]], opts: MimgOptions, client: Client,
                   stats: Stats) -> list[QA]:
    """Questions per chunk, then the verification agent: standalone?, answer, simplify, grounding."""
    chunks = [Chunk(g, d, i, text) for g, group in enumerate(groups) for d in group
              for i, text in enumerate(chunk_text(docs[d].text, opts.chunk_tokens))]
    chunks = _deduplicated(stats, "dedup: chunks", chunks, opts.dedup_threshold)  # boilerplate shared by pages
    asked = _ask(client, stats, "question agent (chunks)", chunks,
                 lambda c: agents.questions_prompt(c.text, opts.questions_per_chunk),
                 lambda t: agents.parse_questions(t, opts.questions_per_chunk),
                 agents.questions_format(opts.questions_per_chunk))
    qas = [QA(chunk, q) for chunk, questions in asked for q in questions]
    stats.record("single-hop questions", len(qas), len(qas))

    def standalone(text: str):
        value, reason = agents.parse_yes_no(text)
        return (None, "needs outside context") if value is False else (value, reason)

    qas = [qa for qa, _ in _ask(client, stats, "verify: standalone", qas,
                                lambda qa: agents.standalone_prompt(qa.question), standalone, agents.YES_NO_FORMAT)]
    for qa, answer in _ask(client, stats, "verify: answer", qas,
                           lambda qa: agents.answer_prompt(qa.chunk.text, qa.question), agents.parse_answer):
        qa.answer = answer
    qas = [qa for qa in qas if qa.answer]
    for qa, short in _ask(client, stats, "verify: simplify", qas,
                          lambda qa: agents.simplify_prompt(qa.question, qa.answer), agents.parse_answer):
        qa.short = short
    qas = [qa for qa in qas if qa.short]
    for qa in qas:
        qa.scores = {"grounding": round(scoring.grounding(qa.short, [qa.chunk.text]), 4)}
    return _passing(stats, "score: single-hop", qas, {"grounding": opts.min_grounding})


def sample_multi_hop(qas: list[QA], n_groups: int, opts: MimgOptions, client: Client,
                     stats: Stats) -> list[MultiHop]:
    """Multiple-question sampling over each group's QAs (embedded together)."""
    texts = [f"{qa.question} {qa.short}" for qa in qas]
    vectors = embed_texts(texts, opts.embeddings, client, opts.embedding_model) if qas else np.zeros((0, 1), np.float32)
    samples, short = [], Counter()
    for g in range(n_groups):
        members = np.array([i for i, qa in enumerate(qas) if qa.chunk.group == g], dtype=np.int64)
        docs = np.array([qas[i].chunk.doc for i in members], dtype=np.int64)
        made, missing = sample_hops(docs, vectors[members], opts.hops, opts.seeds_per_group, opts.seed + g)
        short.update(missing)
        samples += [MultiHop(g, s.kind, [qas[members[j]] for j in s.qas]) for s in made]
    stats.record("sampling", len(qas), len(samples), short)
    return samples


def merge_and_score(samples: list[MultiHop], opts: MimgOptions, client: Client, stats: Stats) -> list[MultiHop]:
    """The merger agent, one hop at a time; then grounding, hop coverage and (optionally) the judge."""
    for s in samples:
        s.question, s.answer = s.hops[0].question, s.hops[0].short
    for hop in range(1, opts.hops):
        merged = _ask(client, stats, f"merge: hop {hop + 1}", samples,
                      lambda s: agents.merge_prompt((s.question, s.answer), (s.hops[hop].question, s.hops[hop].short)),
                      agents.parse_qa, agents.QA_FORMAT)
        for s, (question, answer) in merged:
            s.question, s.answer = question, answer
        samples = [s for s, _ in merged]
    for s in samples:
        sources, hop_answers = [qa.chunk.text for qa in s.hops], [qa.short for qa in s.hops]
        s.scores = {"grounding": round(scoring.grounding(s.answer, sources), 4),
                    "coverage": round(scoring.hop_coverage(f"{s.question} {s.answer}", hop_answers), 4)}
    minimum = {"grounding": opts.min_grounding, "coverage": opts.min_coverage}
    if opts.judge:
        judged = _ask(client, stats, "score: judge", samples,
                      lambda s: scoring.judge_prompt(sorted({qa.chunk.text for qa in s.hops}), s.question, s.answer),
                      scoring.parse_score, agents.SCORE_FORMAT)
        for s, score in judged:
            s.scores["judge"] = score
        samples = [s for s, _ in judged]
        minimum["judge"] = opts.min_judge
    return _passing(stats, "score: multi-hop", samples, minimum)


def conversation(sample: MultiHop, docs: list[Document], groups: list[list[int]]) -> dict:
    """One SFT record: the group's documents as passages + the question -> the merged answer."""
    group = groups[sample.group]
    passages = "\n\n".join(f"Passage {i}:\n{docs[d].text}" for i, d in enumerate(group, 1))
    return {"messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": f"{passages}\n\nQuestion: {sample.question}"},
                         {"role": "assistant", "content": sample.answer}],
            "mimg": {"kind": sample.kind, "documents": [_doc_name(docs[d], d) for d in group],
                     "hops": [{"question": qa.question, "answer": qa.short, "chunk": qa.chunk.index,
                               "document": _doc_name(docs[qa.chunk.doc], qa.chunk.doc), "scores": qa.scores}
                              for qa in sample.hops],
                     "scores": sample.scores}}


def generate_mimg(docs: list[Document], client: Client, out: str | Path, opts: MimgOptions | None = None) -> Stats:
    """Run MIMG over `docs` with `client`; write the conversations to `out` and the counts beside it."""
    opts = opts or MimgOptions()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = Stats()
    docs = docs[:opts.max_docs] if opts.max_docs else docs
    kept, groups = build_groups(docs, opts, client, stats)
    qas = single_hop_qas(kept, groups, opts, client, stats)
    samples = merge_and_score(sample_multi_hop(qas, len(groups), opts, client, stats), opts, client, stats)
    records = [conversation(s, kept, groups) for s in samples]
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_json(stats_path(out), {"conversations": len(records), "stages": stats.to_json(),
                                 "requests": {"sent": client.stats.requests, "cached": client.stats.cache_hits,
                                              "retries": client.stats.retries, "failed": dict(client.stats.failures)},
                                 "options": asdict(opts)})
    return stats


def stats_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".stats.json")
