"""Image task files: the letter extraction rules, VQA normalisation and accuracy against
hand-computed values, and the reader's messages for bad records."""

import json

import pytest

from lmforge.eval import vl_tasks
from lmforge.eval.vl_tasks import extract_letter, normalize_vqa, vqa_scores

OPTIONS = ["red circle", "blue square", "green triangle", "yellow star"]


@pytest.mark.parametrize("generation, letter", [
    ("B", "B"), ("B.", "B"), ("  (C) green triangle", "C"), ("**D**", "D"), ("[A]", "A"),
    ("D: yellow star", "D"),
    # rule 2: "answer is X" / "answer: X" / "option X", the last one
    ("I think the answer is (C).", "C"), ("The answer: b", "B"), ("Not option A but option D", "D"),
    # rule 3: one bracketed letter
    ("It must be the one marked (B) in the picture.", "B"),
    # rule 4: exactly one option's text
    ("It is the blue square.", "B"), ("GREEN triangle!", "C"),
])
def test_letter_rules(generation, letter):
    assert extract_letter(generation, OPTIONS) == letter


@pytest.mark.parametrize("generation", [
    "",                               # nothing
    "E",                              # a letter beyond the four options
    "Blue",                           # starts with B, but as a word; no option's full text
    "a red circle or a blue square",  # two options named
    "maybe (A) or (B)",               # two bracketed letters
])
def test_no_letter(generation):
    assert extract_letter(generation, OPTIONS) is None


def test_rule_order():
    assert extract_letter("(A) or (B)", OPTIONS) == "A"  # rule 1: it starts with (A)
    assert extract_letter("B, so the answer is C", OPTIONS) == "B"  # rule 1 before rule 2
    assert extract_letter("(A) is wrong; the answer is D", OPTIONS) == "A"
    assert extract_letter("I say (B), the blue square... no, the answer: C", OPTIONS) == "C"  # rule 2 before 3


def test_letters_limited_to_the_options():
    assert extract_letter("C", ["yes", "no"]) is None
    assert extract_letter("the answer is C", ["yes", "no"]) is None
    assert extract_letter("yes", ["yes", "no"]) == "A"


def test_vqa_normalisation():
    assert normalize_vqa("  The Two dogs. ") == "2 dogs"
    assert normalize_vqa("It's 2.5 m!") == "its 2.5 m"
    assert normalize_vqa("an apple, a pear") == "apple pear"
    assert normalize_vqa("红色。") == "红色"


def test_vqa_accuracy_hand_computed():
    answers = ["red", "red", "dark red", "Red.", "maroon"]
    # "red" is said by three (red, red, Red.): min(3/3, 1) = 1.
    assert vqa_scores("Red", answers) == (1.0, 1.0)
    # "dark red" by one: 1/3.
    assert vqa_scores("dark red\nbecause ...", answers) == (1.0, pytest.approx(1 / 3))
    # "maroon" by one, "blue" by none.
    assert vqa_scores("the maroon", answers)[1] == pytest.approx(1 / 3)
    assert vqa_scores("blue", answers) == (0.0, 0.0)
    # Two of ten: 2/3; four of ten: capped at 1.
    ten = ["cat"] * 2 + ["dog"] * 4 + ["pet"] * 4
    assert vqa_scores("cat", ten)[1] == pytest.approx(2 / 3)
    assert vqa_scores("dog", ten)[1] == 1.0
    # One answer: exact match only.
    assert vqa_scores("Three", ["3"]) == (1.0, 1.0)
    assert vqa_scores("three apples", ["3"]) == (0.0, 0.0)


def test_prompts():
    p = vl_tasks.mc_prompt("Which shape?", ["circle", "square"])
    assert p == "Which shape?\nA. circle\nB. square\n" + vl_tasks.MC_INSTRUCTION
    assert vl_tasks.vqa_prompt("What colour?") == "What colour?\n" + vl_tasks.VQA_INSTRUCTION


def _write_task(tmp_path, rows):
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "a.png").write_bytes(b"not checked when reading")
    (tmp_path / "img" / "b.png").write_bytes(b"x")
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_reader_good_records(tmp_path):
    path = _write_task(tmp_path, [
        {"id": "mc1", "image": "img/a.png", "question": "Q?", "options": ["x", "y", "z"], "answer": "c",
         "category": "shapes"},
        {"image": "img/a.png", "question": "Q?", "options": ["x", "y"], "answer": 1},
        {"image": "img/a.png", "question": "Q?", "options": ["x", "y"], "answer": "y"},
        {"images": ["img/a.png", "img/b.png"], "question": "<image> vs <image>?", "answers": ["same", 2]},
        {"image": str((tmp_path / "img" / "b.png").resolve()), "question": "Q?", "answer": 7},
        {"image": "data:image/png;base64,AAAA", "question": "Q?", "answer": "x"},
    ])
    records, problems = vl_tasks.read_vl_tasks(path)
    assert problems == []
    assert [r.kind for r in records] == ["mc", "mc", "mc", "vqa", "vqa", "vqa"]
    assert [r.gold for r in records[:3]] == ["C", "B", "B"]
    assert records[0].id == "mc1" and records[1].id == "line2" and records[0].category == "shapes"
    assert records[3].answers == ["same", "2"] and len(records[3].images) == 2
    assert records[3].images[0] == str((tmp_path / "img" / "a.png").resolve())
    assert records[4].answers == ["7"]
    assert records[5].images == ["data:image/png;base64,AAAA"]


def test_reader_bad_records_counted_with_file_and_line(tmp_path):
    good = {"image": "img/a.png", "question": "Q?", "answer": "x"}
    path = _write_task(tmp_path, [
        good,
        "{not json",
        {"image": "img/missing.png", "question": "Q?", "answer": "x"},
        {"question": "Q?", "answer": "x"},
        {"image": "img/a.png", "images": ["img/a.png"], "question": "Q?", "answer": "x"},
        {"image": "img/a.png", "question": "", "answer": "x"},
        {"image": "img/a.png", "question": "Q?", "options": ["x", "y"], "answer": "C"},
        {"image": "img/a.png", "question": "Q?", "options": ["x", "y"], "answer": 5},
        {"image": "img/a.png", "question": "Q?", "options": ["x"], "answer": "A"},
        {"image": "img/a.png", "question": "Q?", "options": ["x", "y"]},
        {"image": "img/a.png", "question": "Q?"},
        {"image": "img/a.png", "question": "Q?", "answers": []},
        {"image": "img/a.png", "question": "<image> and <image>", "answer": "x"},
        {"image": "https://example.com/a.png", "question": "Q?", "answer": "x"},
        "[1, 2]",
        "",
        good,
    ])
    records, problems = vl_tasks.read_vl_tasks(path)
    assert [r.line for r in records] == [1, 17]
    assert len(problems) == 14
    assert all(p.startswith(f"{path}:") for p in problems)
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == list(range(2, 16))
    text = "\n".join(problems)
    for fragment in ("invalid JSON", "not found", "exactly one of 'image'", "'question'", "'C' is not one of",
                     "index 5 is outside", "needs 2 to 26", "needs 'answer'", "needs 'options' + 'answer'",
                     "'answers' must be a non-empty list", "2 <image> placeholder(s) for 1 image",
                     "remote URLs", "expected a JSON object"):
        assert fragment in text, fragment


def test_reader_no_usable_record(tmp_path):
    path = _write_task(tmp_path, ["{bad", {"question": "Q?"}])
    with pytest.raises(vl_tasks.VLTaskError, match="no usable record \\(2 bad\\)"):
        vl_tasks.read_vl_tasks(path)
    with pytest.raises(vl_tasks.VLTaskError, match="no such task file"):
        vl_tasks.read_vl_tasks(tmp_path / "nope.jsonl")


def test_score_items():
    free = vl_tasks.VLRecord(id="a", line=1, images=[], question="Q", answers=["two", "2", "3"])
    assert vl_tasks.score(free, "2") == {"prediction": "2", "score": pytest.approx(2 / 3), "exact": 1.0}
    mc = vl_tasks.VLRecord(id="b", line=2, images=[], question="Q", options=["x", "y"], gold="B")
    assert vl_tasks.score(mc, "B") == {"prediction": "B", "score": 1.0}
    assert vl_tasks.score(mc, "nothing") == {"prediction": None, "score": 0.0}
