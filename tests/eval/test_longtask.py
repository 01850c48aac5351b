"""LongBench-style task files: metrics against hand-computed values, the reader's errors, middle
truncation, buckets and the CLI."""

import argparse
import json
from pathlib import Path

import pytest

from lmforge.eval import longmetrics as lm_metrics
from lmforge.eval import longtask
from lmforge.eval.cli import register
from lmforge.generate import SamplingParams

EXAMPLE = Path(__file__).parent / "fixtures" / "long_qa_example.jsonl"


def test_english_normalisation_and_f1():
    assert lm_metrics.normalize_answer("The  Cat's HAT, an apple!") == "cats hat apple"
    # "the cat sat" -> [cat, sat]; "A cat sat down" -> [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8.
    assert lm_metrics.qa_f1("the cat sat", "A cat sat down") == pytest.approx(0.8)
    # Repeated tokens count once each: [x, x, y] vs [x, y, z]: 2 shared, P = R = 2/3.
    assert lm_metrics.qa_f1("x x y", "x y z") == pytest.approx(2 / 3)
    assert lm_metrics.qa_f1("The.", "a") == 0.0  # nothing left after normalisation
    assert lm_metrics.exact("  The Margaret HALE. ", "Margaret Hale") == 1.0


def test_chinese_normalisation_and_character_f1():
    assert lm_metrics.normalize_zh_answer("Hello，世界！ A b") == "hello世界ab"
    assert lm_metrics.qa_f1_zh("赵大山。", "赵大山") == 1.0
    # 赵大川 vs 赵大山: 2 of 3 characters shared: P = R = 2/3.
    assert lm_metrics.qa_f1_zh("赵大川", "赵大山") == pytest.approx(2 / 3)
    # 是赵大山种的 (6 chars) vs 赵大山 (3): 3 shared, P = 1/2, R = 1, F1 = 2/3.
    assert lm_metrics.qa_f1_zh("是赵大山种的", "赵大山") == pytest.approx(2 / 3)


def test_rouge_l_classification_and_best_answer():
    # LCS of [x, y, z, w] and [x, z, w, v] is [x, z, w]: P = R = 3/4.
    assert lm_metrics.rouge_l("x y z w", "x z w v") == pytest.approx(0.75)
    assert lm_metrics.rouge_l("甲乙丙", "甲丙丁") == pytest.approx(2 / 3)
    classes = ["billing", "shipping", "technical support"]
    assert lm_metrics.classification("billing or shipping", "billing", classes) == 0.5
    assert lm_metrics.classification("billing", "billing", classes) == 1.0
    assert lm_metrics.classification("shipping", "billing", classes) == 0.0
    # A class that is only part of the answer does not count against it (LongBench's rule).
    assert lm_metrics.classification("e-sports", "e-sports", ["sports", "e-sports"]) == 1.0
    assert lm_metrics.best_score("qa_f1", "in 1934", ["1934", "in 1934"]) == 1.0
    assert lm_metrics.best_score("contains", "It was 1934.", ["1935", "1934"]) == 1.0


def test_middle_truncation_keeps_head_and_tail():
    ids = list(range(100))
    assert longtask.truncate_middle(ids, 100) == (ids, [])
    assert longtask.truncate_middle(ids, 10) == ([0, 1, 2, 3, 4], [95, 96, 97, 98, 99])
    head, tail = longtask.truncate_middle(ids, 11)
    assert head == [0, 1, 2, 3, 4] and tail == [94, 95, 96, 97, 98, 99]


def test_bucket_labels():
    edges = longtask.BUCKETS
    assert [longtask.bucket_label(n, edges) for n in (10, 3999, 4000, 7999, 8000, 100_000)] == [
        "0-4k", "0-4k", "4k-8k", "4k-8k", "8k+", "8k+"]
    assert longtask.bucket_label(150, [100, 300]) == "100-300"


def test_example_file_reads_cleanly():
    records, problems = longtask.read_long_tasks(EXAMPLE)
    assert len(records) == 4 and problems == []
    assert records[1].answers == ["1934", "in 1934"] and records[1].length == 52
    records, problems = longtask.read_long_tasks(EXAMPLE, "classification")
    assert [r.id for r in records] == ["ticket-topic"] and len(problems) == 3
    assert all("all_classes" in p for p in problems)


def test_bad_records_are_named_counted_and_skipped(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"context": "c", "input": "q", "answers": ["a"]}
    lines = [json.dumps(good), "{not json", json.dumps({"context": "c", "input": "q"}),
             json.dumps({**good, "answers": "a"}), "", json.dumps({**good, "context": 3}),
             json.dumps({**good, "length": "long"}), json.dumps([1, 2])]
    path.write_text("\n".join(lines) + "\n")
    records, problems = longtask.read_long_tasks(path)
    assert len(records) == 1 and len(problems) == 6
    assert problems[0].startswith(f"{path}:2: invalid JSON")
    assert problems[1] == f"{path}:3: missing field 'answers' (a list of reference answers)"
    assert problems[2].startswith(f"{path}:4: field 'answers' must be a non-empty list of strings")
    assert problems[3] == f"{path}:6: field 'context' must be a string, got int"
    assert problems[4].startswith(f"{path}:7: field 'length' must be a number")
    assert problems[5] == f"{path}:8: expected a JSON object, got list"

    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(longtask.LongTaskError, match=r"bad\.jsonl: no usable record \(6 bad\): .*:1: invalid JSON"):
        longtask.read_long_tasks(path)
    with pytest.raises(longtask.LongTaskError, match="no such task file"):
        longtask.read_long_tasks(tmp_path / "missing.jsonl")
    with pytest.raises(longtask.LongTaskError, match="lacks {input}"):
        longtask.check_template("{context} only")


class AnswerKey:
    """Answers each question from a key; keeps the prompts it was given."""

    name, fingerprint, max_length = "answer-key", "k" * 64, None

    def __init__(self, key: dict[str, str]):
        self.key, self.prompts = key, []

    def generate(self, prompts, params: SamplingParams, progress=None, *, truncate=True):
        self.prompts += prompts
        return [" " + next((a for q, a in self.key.items() if q in p), "no idea") for p in prompts]

    def loglikelihood(self, requests, progress=None):
        raise AssertionError("not used")


def _long_file(tmp_path) -> Path:
    filler = "The committee met again and discussed the weather at length. "
    rows = [{"id": "short", "context": "Mina keeps a red kite.", "input": "What colour is Mina's kite?",
             "answers": ["red"]},
            {"id": "long", "context": "Omar's boat is called Heron. " + filler * 80,
             "input": "What is Omar's boat called?", "answers": ["Heron"]},
            {"id": "unknown", "context": filler * 10, "input": "Who won the race?", "answers": ["Lena Ruiz"]}]
    path = tmp_path / "mini.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_run_long_truncates_the_middle_and_buckets_by_length(tokenizer, tmp_path):
    path = _long_file(tmp_path)
    lm = AnswerKey({"Mina's kite": "red", "Omar's boat": "Heron."})
    result = longtask.run_long(lm, tokenizer, path, template="INSTRUCTION\n{context}\nQ: {input}\nA:",
                               max_length=300, max_new_tokens=8, buckets=[100, 400], out_dir=tmp_path / "out")
    items = {it["id"]: it for it in result["items"]}
    assert [items[i]["score"] for i in ("short", "long", "unknown")] == [100.0, 100.0, 0.0]
    assert items["long"]["truncated"] and not items["short"]["truncated"]
    assert items["long"]["prompt_tokens"] > 400 and items["long"]["bucket"] == "400+"
    assert items["short"]["bucket"] == "0-100" and items["unknown"]["bucket"] == "100-400"
    long_prompt = lm.prompts[1]
    assert long_prompt.startswith("INSTRUCTION\nOmar's boat is called Heron.")  # the head ...
    assert long_prompt.endswith("Q: What is Omar's boat called?\nA:")  # ... and the tail survive
    assert len(tokenizer.encode(long_prompt)) <= 300 - 8 - 1 + 2
    assert result["by_bucket"] == {"0-100": {"n": 1, "score": 100.0}, "100-400": {"n": 1, "score": 0.0},
                                   "400+": {"n": 1, "score": 100.0}}
    assert result["score"] == pytest.approx(200 / 3)
    saved = json.loads(Path(result["json"]).read_text())
    assert saved["n"] == 3 and saved["skipped"] == 0 and saved["metric"] == "qa_f1"
    assert "| 400+ | 1 | 100.0 |" in longtask.results_table(result)


def test_cli_long(llama_checkpoint, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="lmforge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", "long", str(EXAMPLE), str(llama_checkpoint), "--metric", "contains",
                              "--max-new-tokens", "4", "--template", "{context}\\nQuestion: {input}\\nAnswer:",
                              "--out", str(tmp_path)])
    assert args.fn(args) == 0
    saved = json.loads((tmp_path / "long_long_qa_example.json").read_text())
    assert saved["n"] == 4 and saved["template"] == "{context}\nQuestion: {input}\nAnswer:"
    assert "| all | 4 |" in capsys.readouterr().out
