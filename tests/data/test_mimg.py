"""MIMG (lmforge.data.mimg) against a fake OpenAI-compatible server that answers deterministically.

The fake server plays every agent from the prompt it gets: questions built from the chunk's
sentences, YES unless a question points at "this passage", answers that quote the sentence,
merges that join the two QAs. Documents containing GARBAGE or EMPTY get unusable answers.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections import Counter

import numpy as np
import pytest

from lmforge.align.conversations import read_conversations
from lmforge.data.document import Document
from lmforge.data.mimg import agents, scoring
from lmforge.data.mimg.client import Client
from lmforge.data.mimg.graph import chunk_text, document_groups, jaccard, knn, near_duplicates
from lmforge.data.mimg.pipeline import MimgOptions, generate_mimg, stats_path
from lmforge.data.mimg.sampling import sample_hops
from lmforge.data.text import sentences

TOPICS = {
    "tower": ["The Eiffel Tower was completed in 1889 in Paris.", "Gustave Eiffel's company designed the tower.",
              "The tower is 330 metres tall after new antennas.", "About seven million people visit the tower yearly.",
              "The tower was the tallest structure until 1930."],
    "bridge": ["The Golden Gate Bridge opened in 1937 in San Francisco.", "Joseph Strauss was the chief engineer.",
               "The bridge's main span is 1280 metres long.", "Its colour is called International Orange.",
               "Fog often covers the bridge in the summer months."],
    "canal": ["The Panama Canal opened in 1914 across the isthmus.", "The United States built the canal.",
              "Ships are raised by locks to Gatun Lake.", "The canal is about 82 kilometres long.",
              "Panama took control of the canal in 1999."],
    "wall": ["The Great Wall of China was built over many centuries.", "The Ming dynasty rebuilt most visible parts.",
             "The wall stretches more than 21000 kilometres.", "Watchtowers sent signals with smoke and fire.",
             "The wall became a World Heritage Site in 1987."],
}


def fake_answer(prompt: str) -> str:
    """What the fake model says to one agent prompt."""
    if "Write at most" in prompt:
        chunk = prompt.split("Document:\n", 1)[1].split("\n\nWrite at most", 1)[0]
        if "GARBAGE" in chunk:
            return "lorem ipsum dolor sit amet"
        if "EMPTY" in chunk:
            return ""
        facts = sentences(chunk)[:3]
        questions = [f"Which fact is recorded about {f.rstrip('.')}?" for f in facts]
        if "Eiffel" in chunk:
            questions[-1] = "What does this passage say about the author?"
        return "Here you go:\n```json\n" + json.dumps(questions) + "\n```"
    if "Can a reader understand" in prompt:
        return "NO" if "this passage" in prompt else "Yes."
    if "Answer the question from the document only" in prompt:
        question = re.search(r"Question: (.*)\n", prompt).group(1)
        return question.removeprefix("Which fact is recorded about ").removesuffix("?") + "."
    if "Shorten the answer" in prompt:
        answer = re.search(r"Answer: (.*)\n", prompt).group(1)
        return "Answer: " + " ".join(answer.split()[:6])
    if "Combine the two" in prompt:
        q1, q2 = re.findall(r"Question \d: (.*)\n", prompt)
        a1, a2 = re.findall(r"Answer \d: (.*)\n", prompt)
        return json.dumps({"question": f"{q1.rstrip('?')}, and {q2[0].lower()}{q2[1:]}",
                           "answer": f"First, {a1}. Second, {a2}. So both hold."})
    if "Rate this pair" in prompt:
        return "8"
    return "?"


class FakeServer:
    """Counts requests and the most in flight at once; fails the first `fail_first` with 500."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0):
        self.fail_first, self.delay = fail_first, delay
        self.requests, self.in_flight, self.max_in_flight = 0, 0, 0
        self.formats = Counter()  # the response_format schema names asked for
        self.lock = threading.Lock()

    def app(self):
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        app = FastAPI()

        @app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": "fake", "object": "model"}]}

        @app.post("/v1/chat/completions")
        def chat(body: dict):  # a plain def: FastAPI runs it on a thread pool, so requests overlap
            with self.lock:
                self.requests += 1
                n = self.requests
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                if "response_format" in body:
                    self.formats[body["response_format"]["json_schema"]["name"]] += 1
            try:
                time.sleep(self.delay)
                if n <= self.fail_first:
                    return JSONResponse({"error": {"message": "overloaded"}}, status_code=500)
                if "TOO LONG" in body["messages"][-1]["content"]:
                    return JSONResponse({"error": {"message": "long", "code": "context_length_exceeded"}},
                                        status_code=400)
                text = fake_answer(body["messages"][-1]["content"])
                return {"object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}]}
            finally:
                with self.lock:
                    self.in_flight -= 1

        @app.post("/v1/embeddings")
        def embeddings(body: dict):
            with self.lock:
                self.requests += 1
            rows = [[len(t), t.count("a"), 1.0] for t in body["input"]]
            return {"object": "list", "data": [{"index": i, "embedding": r} for i, r in enumerate(rows)]}

        return app


@pytest.fixture
def fake_server():
    pytest.importorskip("fastapi")
    from lmforge.serve.server import start_in_thread

    started = []

    def start(**kwargs) -> tuple[FakeServer, str]:
        fake = FakeServer(**kwargs)
        server, thread, url = start_in_thread(fake.app())
        started.append((server, thread))
        return fake, url + "/v1"

    yield start
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=10)


def make_docs() -> list[Document]:
    docs = [Document(" ".join(lines), id=name) for name, lines in TOPICS.items()]
    tower = TOPICS["tower"]
    near_copy = " ".join(tower[:-1] + [tower[-1].replace("1930", "1931")])  # one word changed
    docs.append(Document(near_copy, id="tower-copy"))
    docs.append(Document("GARBAGE text about nothing in particular, said twice. GARBAGE again here.", id="garbage"))
    docs.append(Document("EMPTY answers come back for this document. EMPTY and nothing else.", id="empty"))
    return docs


OPTS = MimgOptions(chunk_tokens=40, docs_per_sample=2, neighbours=3, seeds_per_group=3)


def run(url: str, tmp_path, concurrency: int = 4, **client) -> tuple:
    c = Client(url, "fake", cache_dir=tmp_path / "cache", concurrency=concurrency, backoff=0.01, **client)
    stats = generate_mimg(make_docs(), c, tmp_path / "mimg.jsonl", OPTS)
    return c, stats


def test_pipeline_writes_sft_conversations_and_rerun_is_cached(fake_server, tmp_path):
    fake, url = fake_server(delay=0.01)
    client, stats = run(url, tmp_path)
    out = tmp_path / "mimg.jsonl"
    convs = read_conversations(out, strict=True)
    assert len(convs) >= 4
    for messages in convs:
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert "Passage 1:" in messages[1]["content"] and "\n\nQuestion: " in messages[1]["content"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["mimg"]["kind"] for r in records} == {"intra_doc", "inter_doc"}
    for r in records:
        assert len(r["mimg"]["hops"]) == 2 and r["mimg"]["scores"]["coverage"] == 1.0
        passages = r["messages"][1]["content"]
        assert all(h["answer"].split()[0] in passages for h in r["mimg"]["hops"])  # the hops are in the context
        inter = {h["document"] for h in r["mimg"]["hops"]}
        assert len(inter) == (2 if r["mimg"]["kind"] == "inter_doc" else 1)
    table = stats.to_json()
    assert table["dedup: documents"]["skipped"] == {"near-duplicate (Jaccard >= 0.75)": 1}
    assert table["verify: standalone"]["skipped"] == {"needs outside context": 1}
    assert table["question agent (chunks)"]["skipped"] == {"unparseable": 1, "empty answer": 1}
    assert "tower-copy" not in out.read_text()
    assert fake.requests == client.stats.requests > 0 and client.stats.cache_hits == 0
    saved = json.loads(stats_path(out).read_text())
    assert saved["conversations"] == len(convs) and saved["requests"]["sent"] == fake.requests
    assert 1 < fake.max_in_flight <= 4

    first = out.read_bytes()
    sent = fake.requests
    again, _ = run(url, tmp_path)  # the same calls: all answered from the cache
    assert fake.requests == sent and again.stats.requests == 0 and again.stats.cache_hits == client.stats.requests
    assert out.read_bytes() == first


def test_concurrency_limit_is_respected(fake_server, tmp_path):
    fake, url = fake_server(delay=0.05)
    c = Client(url, "fake", concurrency=2)
    answers = c.chat_many([[{"role": "user", "content": f"Can a reader understand {i}"}] for i in range(12)])
    assert answers == [("Yes.", "")] * 12
    assert fake.max_in_flight == 2


def test_flaky_server_is_retried_with_backoff(fake_server, tmp_path):
    fake, url = fake_server(fail_first=2)
    c = Client(url, "fake", backoff=0.05, max_retries=3)
    start = time.monotonic()
    assert c.chat([{"role": "user", "content": "Can a reader understand it"}]) == "Yes."
    assert time.monotonic() - start >= 0.05 + 0.1  # 0.05 s, then 0.1 s
    assert (fake.requests, c.stats.requests, c.stats.retries) == (3, 3, 2)


def test_request_that_keeps_failing_is_counted_and_skipped(fake_server, tmp_path):
    fake, url = fake_server(fail_first=10**6)
    c = Client(url, "fake", backoff=0.001, max_retries=2, cache_dir=tmp_path / "cache")
    assert c.chat([{"role": "user", "content": "x"}]) is None
    assert fake.requests == 3 and c.stats.failures == Counter({"http 500": 1})
    assert not any((tmp_path / "cache").rglob("*.json"))  # a failure is not cached: a rerun asks again


def test_client_error_is_not_retried(fake_server):
    _, url = fake_server()
    c = Client(url.removesuffix("/v1") + "/nowhere", "fake", backoff=0.001)
    assert c.chat([{"role": "user", "content": "x"}]) is None
    assert c.stats.requests == 1 and c.stats.failures == Counter({"http 404": 1})


def test_context_length_error_is_final_and_named(fake_server):
    fake, url = fake_server()
    c = Client(url, "fake", backoff=0.001)
    assert c.chat_many([[{"role": "user", "content": "TOO LONG"}]]) == [(None, "http 400 context_length_exceeded")]
    assert fake.requests == 1


def test_endpoint_embeddings_are_unit_vectors_and_cached(fake_server, tmp_path):
    from lmforge.data.mimg.embed import embed_texts

    fake, url = fake_server()
    c = Client(url, "fake", cache_dir=tmp_path)
    texts = [f"text {'a' * i}" for i in range(70)]  # two batches of the endpoint
    vectors = embed_texts(texts, "endpoint", c, "embedder")
    assert vectors.shape == (70, 3) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert fake.requests == 2
    assert np.array_equal(embed_texts(texts, "endpoint", c, "embedder"), vectors) and fake.requests == 2


def test_model_is_taken_from_the_endpoint(fake_server):
    _, url = fake_server()
    assert Client(url).resolve_model() == "fake"


def test_dedup_drops_near_duplicate_and_keeps_different():
    base = " ".join(TOPICS["bridge"] * 2)
    near = base.replace("Strauss", "Strauß", 1)
    other = " ".join(TOPICS["canal"])
    dropped = near_duplicates([base, near, other], 0.75)
    assert list(dropped) == [1] and dropped[1][0] == 0 and dropped[1][1] >= 0.75
    half = " ".join(TOPICS["bridge"][:3] + TOPICS["canal"][:2])  # shares about half: kept
    assert near_duplicates([base, half], 0.75) == {}


def test_jaccard_formula():
    a, b = np.array([1, 2, 3, 4]), np.array([3, 4, 5])
    assert jaccard(a, b) == pytest.approx(2 / 5)


def test_chunks_respect_the_token_budget():
    text = " ".join(s for lines in TOPICS.values() for s in lines)
    chunks = chunk_text(text, chunk_tokens=30)
    assert len(chunks) > 4 and all(len(c.encode()) <= 4 * 30 for c in chunks)
    assert " ".join(chunks) == text
    assert chunk_text("word " * 200, chunk_tokens=20)[0].count("word") <= 16


def test_knn_and_groups():
    vectors = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]] + 0.01 * np.eye(4, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    neighbours, _ = knn(vectors, 2)
    assert neighbours[0, 0] == 1 and neighbours[2, 0] == 3
    assert document_groups(neighbours, [10] * 4, 2, 100) == [[0, 1], [2, 3]]
    assert document_groups(neighbours, [10] * 4, 2, 15) == [[0], [1], [2], [3]]


def test_sampling_within_and_across_documents():
    docs = np.array([0, 0, 1, 1])
    vectors = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1]], dtype=np.float32)
    samples, short = sample_hops(docs, vectors, hops=2, seeds=4)
    got = {(s.kind, frozenset(s.qas)) for s in samples}
    assert ("intra_doc", frozenset({0, 1})) in got and ("inter_doc", frozenset({0, 2})) in got
    assert len(got) == len(samples)  # the same QAs are merged once
    assert all(docs[s.qas[0]] != docs[s.qas[1]] for s in samples if s.kind == "inter_doc")
    _, short = sample_hops(np.array([0]), vectors[:1], hops=2, seeds=1)
    assert set(short) == {"intra_doc: too few QAs in the document", "inter_doc: too few QAs in the other documents"}


@pytest.mark.parametrize("text, expected", [
    ('["Who built it?", "When?"]', (["Who built it?", "When?"], "")),
    ('Sure!\n1. Who built the canal?\n2. When did it open?\nThanks', (["Who built the canal?", "When did it open?"], "")),
    ("[]", (None, "no questions")),
    ("", (None, "empty answer")),
    ("no idea", (None, "unparseable")),
    ('["a?", "b?", "c?", "d?"]', (["a?", "b?", "c?"], "")),
    ('[{"question": "Who?"}, {"q": "When?"}]', (["Who?", "When?"], "")),
])
def test_parse_questions(text, expected):
    assert agents.parse_questions(text, 3) == expected


def test_parsers_of_the_other_agents():
    assert agents.parse_qa('Result: {"question": "Q?", "answer": "A."}') == (("Q?", "A."), "")
    assert agents.parse_qa("Question: Q?\nAnswer: A.") == (("Q?", "A."), "")
    assert agents.parse_qa('{"question": ""}') == (None, "unparseable")
    assert agents.parse_yes_no("No, it refers to the passage.") == (False, "")
    assert agents.parse_yes_no("maybe") == (None, "unparseable")
    assert agents.parse_answer("NOT IN DOCUMENT") == (None, "not answered by the chunk")
    assert agents.parse_answer("Answer: 1889") == ("1889", "")
    assert scoring.parse_score("Score: 7/10") == (7, "")


def test_scores():
    assert scoring.grounding("Paris in 1889", ["The tower was completed in 1889 in Paris."]) == 1.0
    assert scoring.grounding("London in 1900", ["The tower was completed in 1889 in Paris."]) == 0.0
    assert scoring.hop_coverage("It opened in 1914 and in 1937.", ["1914", "1937", "1889"]) == pytest.approx(2 / 3)
    assert scoring.failed_threshold({"grounding": 0.2, "judge": None}, {"grounding": 0.5, "judge": 6}) == "grounding < 0.5"


def test_cli_runs_against_the_endpoint(fake_server, tmp_path, capsys):
    from lmforge.cli import main

    _, url = fake_server()
    docs = tmp_path / "curated"  # a stage folder of `lmforge data run`: shards of JSONL.gz
    docs.mkdir()
    with gzip.open(docs / "00000.000.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(d.to_dict()) + "\n" for d in make_docs()))
    out = tmp_path / "out" / "mimg.jsonl"
    assert main(["data", "mimg", str(docs), "--out", str(out), "--base-url", url, "--chunk-tokens", "40",
                 "--docs-per-sample", "2", "--backoff", "0.01"]) == 0
    printed = capsys.readouterr().out
    assert "score: multi-hop" in printed and f"to {out}" in printed
    assert read_conversations(out) and (tmp_path / "out" / "mimg.cache").is_dir()


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing.jsonl"], "missing.jsonl"),
    (["{tmp}/docs.jsonl", "--hops", "1"], "hops=1"),
    (["{tmp}/docs.jsonl", "--dedup-threshold", "0"], "dedup_threshold"),
])
def test_cli_errors_name_the_problem(tmp_path, capsys, args, message):
    from lmforge.cli import main

    (tmp_path / "docs.jsonl").write_text('{"text": "One document."}\n')
    argv = ["data", "mimg", *[a.format(tmp=tmp_path) for a in args], "--out", str(tmp_path / "o.jsonl"),
            "--base-url", "http://127.0.0.1:9/v1", "--model", "x", "--retries", "0"]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("structured", [True, False])
def test_agents_ask_for_structured_outputs_unless_told_not_to(fake_server, tmp_path, structured):
    from lmforge.generate.json_schema import compile_schema

    fake, url = fake_server()
    run(url, tmp_path, structured=structured)
    if structured:
        assert set(fake.formats) == {"questions", "verdict", "qa"}
    else:
        assert not fake.formats
    for fmt in (agents.questions_format(3), agents.YES_NO_FORMAT, agents.QA_FORMAT, agents.SCORE_FORMAT):
        compile_schema(fmt["json_schema"]["schema"])  # `lmforge serve` enforces each of them

