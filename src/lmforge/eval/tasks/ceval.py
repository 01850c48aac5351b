"""C-Eval (Huang et al., 2023) from a local folder in its published layout, 5-shot, PPL.

The `val` split is evaluated (the `test` split's answers are not public); the shots are the
first five `dev` questions of the same subject. Layout and CSV rules: `chinese_mc.py`.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.eval.task import Task
from lmforge.eval.tasks.chinese_mc import make_task, read_split, split_files


def task(folder: str | Path, split: str = "val", num_fewshot: int = 5,
         subject_names: dict[str, str] | None = None) -> Task:
    folder = Path(folder)
    test = read_split(split_files(folder, split, f"_{split}"), "question", "answer")
    dev = read_split(split_files(folder, "dev", "_dev"), "question", "answer")
    return make_task("ceval", test, dev, "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
                     "", "答案:", num_fewshot, subject_names)
