"""Chinese multiple-choice exams in their published CSV layouts, read from a local folder.

C-Eval (Huang et al., 2023) and CMMLU (Li et al., 2023) ship in no package, so they are read
from the folder a user unzips them into (5-shot, PPL: the InternLM2 report's OpenCompass evaluation,
arXiv 2403.17297; docs/papers.md §9):

    C-Eval  dev/<subject>_dev.csv  val/<subject>_val.csv  test/<subject>_test.csv
            columns: id,question,A,B,C,D,answer[,explanation]   (test has no answers: use val)
    CMMLU   dev/<subject>.csv  test/<subject>.csv
            columns: <index>,Question,A,B,C,D,Answer

This module holds what both share: reading a split with errors naming the file and line, and
the task with OpenCompass's Chinese prompt. `ceval.py` and `cmmlu.py` give the two layouts.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.eval.data import DataError, read_csv
from lmforge.eval.task import Task

LETTERS = ["A", "B", "C", "D"]


def read_split(files: dict[str, Path], question: str, answer: str | None) -> list[dict]:
    """Items of one split from {subject: csv file}; `answer` None when the split has no answers."""
    out = []
    for subject, path in sorted(files.items()):
        required = [question, *LETTERS] + ([answer] if answer else [])
        for row in read_csv(path, required):
            gold = row[answer].strip().upper() if answer else None
            if answer and gold not in LETTERS:
                raise DataError(f"{path}:{row['_line']}: answer {row[answer]!r} is not one of {LETTERS}")
            out.append({"subject": subject, "question": row[question].strip(),
                        "choices": [row[x].strip() for x in LETTERS],
                        "answer": LETTERS.index(gold) if gold else None,
                        "id": f"{subject}/{row['_line']}"})
    return out


def split_files(folder: Path, split: str, suffix: str) -> dict[str, Path]:
    directory = folder / split
    if not directory.is_dir():
        raise DataError(f"{folder}: no {split}/ folder; expected the published layout ({split}/<subject>{suffix}.csv)")
    files = {p.name[: -len(suffix) - 4]: p for p in directory.glob(f"*{suffix}.csv")}
    if not files:
        raise DataError(f"{directory}: no *{suffix}.csv files")
    return files


def make_task(name: str, test: list[dict], dev: list[dict], header: str, question_prefix: str,
              answer_prefix: str, num_fewshot: int, subject_names: dict[str, str] | None) -> Task:
    names = subject_names or {}

    def description(doc: dict) -> str:
        return header.format(subject=names.get(doc["subject"], doc["subject"].replace("_", " ")))

    def query(doc: dict) -> str:
        options = "".join(f"\n{x}. {c}" for x, c in zip(LETTERS, doc["choices"]))
        return f"{question_prefix}{doc['question']}{options}\n{answer_prefix}"

    return Task(name=name, mode="ppl", paper="InternLM2 report (OpenCompass): 5-shot, PPL (OpenCompass prompt)",
                docs=lambda: test, fewshot_docs=lambda: dev, description=description, query=query,
                choices=lambda d: LETTERS, gold=lambda d: d["answer"], num_fewshot=num_fewshot,
                fewshot="first_n", group=lambda d: d["subject"], limit_per_group=True, doc_id=lambda d: d["id"])
