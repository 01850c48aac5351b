"""Task files (TOML) and bad input: errors name the file and the line."""

import json

import pytest

from lmforge.eval.data import DataError, read_csv, read_jsonl
from lmforge.eval.harness import evaluate_task
from lmforge.eval.taskfile import TaskFileError, load_task
from lmforge.eval.tasks import get_task
from tests.eval.stubs import ConstantLM, OracleLM

ITEMS = [{"country": "France", "options": ["Paris", "Lyon", "Nice"], "answer": "Paris"},
         {"country": "Japan", "options": ["Osaka", "Tokyo", "Kyoto"], "answer": 1},
         {"country": "Italy", "options": ["Milan", "Turin", "Rome"], "answer": "C"}]

GOOD = '''name = "capitals"
mode = "ppl"
data = "items.jsonl"
num_fewshot = 1
description = "Capitals.\\n\\n"
query = "Country: {country}\\nCapital:"
choices_field = "options"
gold = "answer"
'''


def write(folder, task_text=GOOD, items=ITEMS):
    (folder / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    path = folder / "capitals.toml"
    path.write_text(task_text)
    return path


def test_task_file_runs_and_scores(tmp_path):
    task = get_task(str(write(tmp_path)))
    examples = task.examples()
    assert [ex.gold for ex in examples] == [0, 1, 2]  # text, index and letter all resolve
    assert examples[1].prompt.startswith("Capitals.\n\nCountry: France\nCapital: Paris\n\nCountry: Japan")
    assert evaluate_task(OracleLM([task]), task)[0]["metrics"]["acc"] == 1.0
    assert evaluate_task(ConstantLM(), task)[0]["metrics"]["acc"] == pytest.approx(1 / 3)


def test_generation_task_file(tmp_path):
    (tmp_path / "qa.jsonl").write_text('{"q": "2+2", "a": "4"}\n{"q": "3+3", "a": "6"}\n')
    path = tmp_path / "qa.toml"
    path.write_text('name = "sums"\nmode = "gen"\ndata = "qa.jsonl"\nquery = "{q}="\ngold = "a"\n'
                    'stop = ["\\n"]\nextract = "last_number"\nmatch = "number"\n')
    task = load_task(path)
    assert evaluate_task(ConstantLM(" 4"), task)[0]["metrics"]["exact_match"] == 0.5


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, GOOD.replace('mode = "ppl"', 'mode = ppl'))
    with pytest.raises(TaskFileError, match=r"capitals.toml: invalid TOML: .*line 2"):
        load_task(path)


def test_unknown_key_names_its_line(tmp_path):
    path = write(tmp_path, GOOD + 'sheets = 3\n')
    with pytest.raises(TaskFileError, match=r"capitals.toml:9: unknown key 'sheets'"):
        load_task(path)


def test_missing_key_and_bad_mode(tmp_path):
    with pytest.raises(TaskFileError, match="missing key 'query'"):
        load_task(write(tmp_path, GOOD.replace('query = "Country: {country}\\nCapital:"\n', "")))
    with pytest.raises(TaskFileError, match=r"capitals.toml:2: mode = 'pp'"):
        load_task(write(tmp_path, GOOD.replace('"ppl"', '"pp"')))


def test_data_errors_name_file_and_line(tmp_path):
    path = write(tmp_path)
    (tmp_path / "items.jsonl").write_text(json.dumps(ITEMS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"items.jsonl:2: invalid JSON"):
        load_task(path)
    (tmp_path / "items.jsonl").write_text(json.dumps(ITEMS[0]) + "\n" + json.dumps({"country": "Peru"}) + "\n")
    with pytest.raises(DataError, match=r"items.jsonl:2: item lacks field\(s\) \['answer', 'options'\]"):
        load_task(path)
    (tmp_path / "items.jsonl").write_text(json.dumps({**ITEMS[0], "answer": "Berlin"}) + "\n")
    with pytest.raises(DataError, match=r"items.jsonl:1: gold value 'Berlin'"):
        load_task(path)
    with pytest.raises(TaskFileError, match="does not exist"):
        load_task(write(tmp_path, GOOD.replace("items.jsonl", "missing.jsonl")))


def test_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('question,A,B\n"ok",1,2\n"short",1\n')
    with pytest.raises(DataError, match=r"x.csv:3: 2 fields, the header has 3"):
        read_csv(path, ["question", "A", "B"])
    path.write_text('question,A\n"multi\nline",1\n"",2\n')
    with pytest.raises(DataError, match=r"x.csv:4: empty value in column\(s\) \['question'\]"):
        read_csv(path, ["question", "A"])
    with pytest.raises(DataError, match=r"x.csv:1: header .* lacks column\(s\) \['B'\]"):
        read_csv(path, ["question", "B"])


def test_jsonl_must_hold_objects(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(DataError, match=r"a.jsonl:3: expected a JSON object"):
        read_jsonl(path)
