"""CMMLU (Li et al., 2023) from a local folder in its published layout, 5-shot, PPL.

`test/<subject>.csv` is evaluated with the first five `dev/<subject>.csv` questions as shots.
Layout and CSV rules: `chinese_mc.py`.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.eval.task import Task
from lmforge.eval.tasks.chinese_mc import make_task, read_split, split_files


def task(folder: str | Path, num_fewshot: int = 5, subject_names: dict[str, str] | None = None) -> Task:
    folder = Path(folder)
    test = read_split(split_files(folder, "test", ""), "Question", "Answer")
    dev = read_split(split_files(folder, "dev", ""), "Question", "Answer")
    return make_task("cmmlu", test, dev, "以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n",
                     "题目：", "答案是:", num_fewshot, subject_names)
