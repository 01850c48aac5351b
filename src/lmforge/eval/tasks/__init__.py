"""The benchmark tasks, one small file each, and `get_task` to name them.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9.

    mmlu                         all 57 subjects (5-shot, PPL); `mmlu:anatomy+virology` for some
    arc_easy  arc_challenge      0-shot, PPL
    hellaswag                    0-shot, PPL
    gsm8k                        4-shot chain of thought, generation
    humaneval                    0-shot, code execution, pass@k
    mbpp                         3-shot, code execution, pass@k
    ceval:FOLDER  cmmlu:FOLDER   5-shot, PPL, from a local copy in the published CSV layout
    path/to/task.toml            a task file (lmforge.eval.taskfile)
"""

from __future__ import annotations

from pathlib import Path

from lmforge.eval.task import Task
from lmforge.eval.tasks import arc, ceval, cmmlu, gsm8k, hellaswag, humaneval, mbpp, mmlu

BUILTIN = {
    "mmlu": mmlu.task,
    "arc_easy": lambda: arc.task("easy"),
    "arc_challenge": lambda: arc.task("challenge"),
    "hellaswag": hellaswag.task,
    "gsm8k": gsm8k.task,
    "humaneval": humaneval.task,
    "mbpp": mbpp.task,
}
LOCAL = {"ceval": ceval.task, "cmmlu": cmmlu.task}  # need the folder of a local copy


def get_task(spec: str) -> Task:
    """A task from its name, `name:argument`, or the path of a TOML task file."""
    if spec.endswith(".toml"):
        from lmforge.eval.taskfile import load_task

        return load_task(spec)
    name, _, arg = spec.partition(":")
    if name == "mmlu" and arg:
        return mmlu.task(arg.split("+"))
    if name in LOCAL:
        if not arg:
            raise ValueError(f"task {name!r} reads a local copy: write {name}:PATH/TO/{name.upper()}_FOLDER")
        return LOCAL[name](Path(arg))
    if name in BUILTIN and not arg:
        return BUILTIN[name]()
    raise ValueError(f"unknown task {spec!r}; choose from {', '.join([*BUILTIN, *LOCAL])} or a .toml task file")


__all__ = ["BUILTIN", "LOCAL", "get_task"]
