"""The demo recipe on the demo crawl, end to end, scored against the planted truth (issue #3 acceptance)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np

from lmforge.data.democrawl import BLOCKED
from lmforge.data.report import build_report, plot_funnel
from lmforge.data.document import Document
from lmforge.data.rules.encoding import encoding_damage
from lmforge.data.step import TaskStats
from lmforge.data.url_filter import UrlFilter
from lmforge.shards import list_shards, open_shard
from lmforge.tokenizer import Tokenizer

from tests.data.conftest import demo_recipe


def read_stage(run: Path, stage: str) -> list[dict]:
    return [json.loads(line) for f in sorted((run / stage).glob("*.jsonl.gz"))
            for line in gzip.open(f, "rt", encoding="utf-8")]


def test_every_stage_writes_output_and_stats(demo_run, demo_crawl):
    report = build_report(demo_run)
    names = [row["stage"] for row in report["funnel"]]
    assert names == ["format", "clean", "dedup", "safe", "quality", "tokens", "longctx"]
    rows = {row["stage"]: row for row in report["funnel"]}
    truth = [json.loads(line) for line in (demo_crawl / "truth.jsonl").read_text().splitlines()]
    corrupt = sum(r["kind"] == "corrupt_member" for r in truth)
    assert corrupt >= 1 and rows["format"]["docs_in"] == 300 - corrupt  # a corrupt gzip member loses its page only
    for a, b in zip(names[:5], names[1:6]):
        assert rows[a]["docs_out"] == rows[b]["docs_in"], (a, b)   # each stage reads the previous one's output
        assert rows[a]["docs_out"] == len(read_stage(demo_run, a))
    assert rows["tokens"]["tokens_exact"] and rows["tokens"]["tokens_out"] > 50_000
    assert {"en", "zh"} <= set(rows["quality"]["lang_out"])
    for row in report["funnel"]:
        assert sum(sum(r.values()) for r in row["drops"].values()) == row["docs_in"] - row["docs_out"] or row["stage"] == "tokens"


def test_near_duplicates_found_with_recall_and_precision(demo_run):
    dedup = build_report(demo_run)["truth"]["dedup"]
    assert dedup["jaccard>=0.8"]["pairs"] >= 30
    assert dedup["jaccard>=0.8"]["recall"] >= 0.95
    assert dedup["precision"] >= 0.98
    assert dedup["kept_latest_dump"] == 1.0


def test_latest_dump_is_kept(demo_run):
    clusters = [json.loads(line) for line in gzip.open(demo_run / "_work" / "dedup" / "clusters.jsonl.gz", "rt")]
    dumps = {d["url"]: d["dump"] for d in read_stage(demo_run, "clean")}
    assert clusters
    for c in clusters:
        assert dumps[c["kept"]] == max(dumps[u] for u in c["members"])


def read_truth_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in open(Path(json.loads((run / "_pipeline.json").read_text())["input"])
                                              / "truth.jsonl")]


def test_every_blocklisted_domain_is_dropped(demo_run):
    truth = read_truth_rows(demo_run)
    blocked = {r["url"] for r in truth if r["kind"] == "blocked_domain"}
    banned_words = {r["url"] for r in truth if r["kind"] == "url_word"}
    assert blocked
    recipe_step = next(step for stage in demo_recipe(demo_run, demo_run)["stage"] for step in stage["steps"]
                       if step["step"] == "url_filter")
    rule = UrlFilter(domains=recipe_step["domains"]).bind(TaskStats("t", 0))
    rule.setup()
    assert all(rule.filter(Document("", url=f"https://{host}/"))[1].startswith("url_domain:") for host in BLOCKED)
    # the shipped default is a real-world sample, not tuned to the demo: it blocks none of the demo's domains
    shipped = UrlFilter().bind(TaskStats("t", 0))
    shipped.setup()
    assert all(shipped.blocked_domain(host) is None for host in BLOCKED)
    assert shipped.filter(Document("", url="https://www.pornhub.com/x")) == (False, "url_domain:pornhub.com")
    # nothing else in the demo crawl is dropped by its URL, and every planted domain and banned word at
    # the format stage
    drops = [json.loads(line) for f in (demo_run / "_drops" / "format").glob("*.gz") for line in gzip.open(f, "rt")]
    by_url = {d["url"]: d["reason"] for d in drops if d["step"] == "url_filter"}
    assert set(by_url) == blocked | banned_words and len(banned_words) == 3
    assert all(by_url[u].startswith("url_domain:") for u in blocked)
    assert sorted(by_url[u].split(":")[0] for u in banned_words) == ["url_soft_words", "url_word", "url_word"]


def test_non_200_responses_are_dropped_with_their_status(demo_run):
    errors = {r["url"] for r in read_truth_rows(demo_run) if r["kind"] == "http_error"}
    drops = [json.loads(line) for f in (demo_run / "_drops" / "format").glob("*.gz") for line in gzip.open(f, "rt")]
    by_status = {d["url"]: d["reason"] for d in drops if d["step"] == "http_status"}
    assert set(by_status) == errors
    assert sorted(by_status.values()) == ["http_301", "http_404", "http_500"]
    assert build_report(demo_run)["truth"]["kinds"]["http_error"] == {"format": 3}


def test_planted_personal_data_is_masked_and_the_pages_kept(demo_run):
    # The truth rows of kind "pii" list the planted values, checked here and scored by the report. The
    # pages are clean pages of the demo, so they meet the false drops of clean pages: here one at clean
    # before the pii step (chinese_quality: the People's Daily text ends lines with an ellipsis).
    rows = [r for r in read_truth_rows(demo_run) if r["kind"] == "pii"]
    assert len(rows) == 3 and build_report(demo_run)["truth"]["kinds"]["pii"] == {"clean": 1, "kept": 2}
    texts = {d["url"]: d["text"] for d in read_stage(demo_run, "clean")}
    reached = [r for r in rows if r["url"] in texts]
    assert len(reached) == 2
    for r in reached:
        text = texts[r["url"]]
        for kind, values in r["pii"].items():
            assert all(v not in text for v in values), (r["url"], kind)
            assert f"<{kind.upper()}>" in text, (r["url"], kind)


def test_pages_with_a_wrong_or_missing_charset_are_decoded(demo_run):
    truth = [json.loads(line) for line in open(Path(json.loads((demo_run / "_pipeline.json").read_text())["input"])
                                               / "truth.jsonl")]
    wrong = {r["url"] for r in truth if r["kind"] == "wrong_charset"}
    fmt = {row["stage"]: row for row in build_report(demo_run)["funnel"]}["format"]
    assert fmt["extra"]["charset_detected"] == len(wrong) == 5
    assert fmt["extra"]["charset_replaced"] == 4                       # the damaged UTF-8 pages
    assert fmt["extra"]["charset_declared"] == 300 - 9 - 1               # one record lost to a corrupt member
    texts = {d["url"]: d["text"] for d in read_stage(demo_run, "format") if d["url"] in wrong}
    assert len(texts) == len(wrong) and not any(encoding_damage(t) for t in texts.values())


def test_planted_cases_land_where_expected(demo_run):
    truth = build_report(demo_run)["truth"]
    kinds = truth["kinds"]
    assert kinds["short"].get("kept", 0) == 0
    assert kinds["keyboard_mash"].get("kept", 0) == 0
    assert kinds["word_salad"].get("quality", 0) >= 0.7 * sum(kinds["word_salad"].values())
    # The default classifiers learned from real text and word lists, not from the demo's generator
    # (assets/*.md): the planted insults are found by the word blocklist, the toxicity model and the
    # clean stage's repetition rules together, less completely than by a model trained on the generator.
    for kind, most_kept in (("toxic", 0.4), ("porn", 0.15)):
        assert kinds[kind].get("kept", 0) <= most_kept * sum(kinds[kind].values()), (kind, kinds[kind])
    assert kinds["ad"].get("quality", 0) >= 0.6 * sum(kinds["ad"].values()), kinds["ad"]
    assert kinds["blocked_domain"] == {"format": sum(kinds["blocked_domain"].values())}
    assert kinds["bad_encoding"].get("kept", 0) == 0
    assert kinds["clean"].get("kept", 0) >= 0.6 * sum(kinds["clean"].values())
    assert truth["stages"]["dedup"]["precision"] >= 0.95


def test_phone_numbers_are_masked_before_dedup(demo_run):
    clean = {row["stage"]: row for row in build_report(demo_run)["funnel"]}["clean"]
    assert clean["extra"]["pii_phone"] >= 5 and clean["extra"]["pii_docs"] >= 3   # the planted ads' hotlines
    texts = [d["text"] for d in read_stage(demo_run, "clean")]
    assert sum("<PHONE>" in t for t in texts) == clean["extra"]["pii_docs"]
    assert not any(re.search(r"1-800-555-\d{4}\b|400-800-\d{4}\b", t) for t in texts)


def test_scores_are_written_in_wanjuan_names(demo_run):
    docs = read_stage(demo_run, "quality")
    for d in docs:
        assert {"toxic_score", "porn_score", "not_ad_score", "fluency_score"} <= set(d["scores"])
        assert all(0 <= v <= 1 for v in d["scores"].values())


def test_token_shards_hold_each_document_between_bos_and_eos(demo_run, small_tokenizer):
    tok = Tokenizer.load(small_tokenizer)
    headers = list_shards(demo_run / "tokens")
    assert len(headers) == 4
    docs = {d["id"]: d["text"] for d in read_stage(demo_run, "quality")}
    n = 0
    for h in headers:
        shard = open_shard(h)
        assert shard.header.dtype == "uint16" and shard.header.vocab_size == tok.vocab_size
        for i in range(shard.n_docs):
            ids = shard.document(i)
            assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
            assert not np.isin(ids[1:-1], [tok.bos_id, tok.eos_id]).any()
            n += 1
    assert n == len(docs)
    first = open_shard(headers[0]).document(0)
    assert tok.decode(first[1:-1].tolist()) in docs.values()


def test_long_context_branch_keeps_only_long_documents(demo_run):
    docs = read_stage(demo_run, "longctx")
    assert docs and all(len(d["text"].encode()) >= 32 * 1024 for d in docs)


def test_report_chart(demo_run, tmp_path):
    png = plot_funnel(build_report(demo_run), tmp_path / "funnel.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_corrupt_members_are_the_only_pages_lost_and_pii_is_masked(demo_run):
    truth = build_report(demo_run)["truth"]
    assert truth["stages"]["unread"]["precision"] == truth["stages"]["unread"]["recall"] == 1.0
    assert truth["kinds"]["corrupt_member"] == {"unread": truth["stages"]["unread"]["planted"]}
    assert all("unread" not in where for kind, where in truth["kinds"].items() if kind != "corrupt_member")
    assert truth["pii"]["values"] >= 2 and truth["pii"]["left_unmasked"] == 0
