"""C-Eval and CMMLU loaders on a small Chinese multiple-choice set written in their CSV layouts."""

import csv

import pytest

from lmforge.eval.data import DataError
from lmforge.eval.harness import evaluate_task
from lmforge.eval.tasks import get_task
from tests.eval.stubs import ConstantLM, OracleLM

QUESTIONS = {
    "chinese_history": [("中国历史上第一个统一的封建王朝是哪一个？", ["秦朝", "汉朝", "唐朝", "宋朝"], "A"),
                        ("唐朝的都城是哪里？", ["洛阳", "长安", "开封", "南京"], "B"),
                        ("《史记》的作者是谁？", ["班固", "司马光", "司马迁", "陈寿"], "C"),
                        ("郑和下西洋发生在哪个朝代？", ["元朝", "宋朝", "清朝", "明朝"], "D")],
    "geography": [("中国最长的河流是哪一条？", ["长江", "黄河", "珠江", "淮河"], "A"),
                  ("中国面积最大的省级行政区是？", ["西藏", "新疆", "青海", "内蒙古"], "B"),
                  ("泰山位于哪个省？", ["河南", "山西", "山东", "河北"], "C")],
}


def write_ceval(root, answers=None):
    for split, suffix in (("dev", "_dev"), ("val", "_val")):
        (root / split).mkdir(parents=True, exist_ok=True)
        for subject, rows in QUESTIONS.items():
            with open(root / split / f"{subject}{suffix}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["id", "question", "A", "B", "C", "D", "answer", "explanation"])
                for i, (q, options, answer) in enumerate(rows):
                    q = q + "（练习）" if split == "dev" else q  # dev questions differ from the evaluated ones
                    w.writerow([i, q, *options, (answers or {}).get((subject, i), answer), "解析"])
    return root


def write_cmmlu(root):
    for split in ("dev", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        for subject, rows in QUESTIONS.items():
            with open(root / split / f"{subject}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
                for i, (q, options, answer) in enumerate(rows):
                    q = q + "（练习）" if split == "dev" else q
                    w.writerow([i, q, *options, answer])
    return root


@pytest.mark.parametrize("name,writer", [("ceval", write_ceval), ("cmmlu", write_cmmlu)])
def test_loader_oracle_and_chance(tmp_path, name, writer):
    task = get_task(f"{name}:{writer(tmp_path / name)}")
    examples = task.examples()
    assert len(examples) == 7 and {ex.group for ex in examples} == set(QUESTIONS)
    first = examples[0]
    assert first.gold == 0 and first.choices == ["A", "B", "C", "D"]
    header = "以下是中国关于chinese history考试的单项选择题" if name == "ceval" else "以下是关于chinese history的单项选择题"
    assert first.prompt.startswith(header)
    # 5-shot from dev, same subject only: the four history dev questions, then the question.
    assert first.prompt.count("（练习）") == 4 and "长江" not in first.prompt
    assert first.prompt.endswith("中国历史上第一个统一的封建王朝是哪一个？\nA. 秦朝\nB. 汉朝\nC. 唐朝\nD. 宋朝\n"
                                 + ("答案:" if name == "ceval" else "答案是:"))
    oracle, _ = evaluate_task(OracleLM([task]), task)
    assert oracle["metrics"]["acc"] == 1.0 and set(oracle["groups"]) == set(QUESTIONS)
    constant, _ = evaluate_task(ConstantLM(), task)
    assert constant["metrics"]["acc"] == pytest.approx(2 / 7)  # two answers are "A"


def test_bad_answer_names_file_and_line(tmp_path):
    root = write_ceval(tmp_path / "ceval", answers={("geography", 1): "E"})
    with pytest.raises(DataError, match=r"geography_val.csv:3: answer 'E' is not one of"):
        get_task(f"ceval:{root}")


def test_missing_layout_is_explained(tmp_path):
    with pytest.raises(DataError, match=r"no val/ folder"):
        get_task(f"ceval:{tmp_path}")
