"""Image QA evaluation: accuracy on the held-out generated demo images, and on image task files.

Paper: InternVL3, arXiv 2504.10479 (section 3, multimodal evaluation); docs/papers.md §10.

- `image_qa_accuracy`: the model answers each held-out `lmforge.vl.synth` example (shapes,
  colours, counts, positions, charts, rendered text in en and zh) and `answers.check_answer` judges
  it; accuracy overall, by kind and by language, and every sample.
- `run_vl_taskfile`: a user's JSONL of image questions (`lmforge.eval.vl_tasks`: multiple choice
  scored by the letter, free-form by VQA accuracy).
- `run_vl_checkpoint`: `lmforge eval vl MODEL [--demo N | --tasks FILE]`, which loads a
  vision-language checkpoint, prints a table and writes `vl_demo.json` / `vl_<task>.json`.

Both take `answer_fn(queries) -> answers` in place of the model when given (a stub, another
engine); by default the answers are `vl_generate.vl_answers`' greedy ones.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lmforge.atomic import write_json
from lmforge.eval import vl_tasks
from lmforge.eval.metrics import mean
from lmforge.eval.vl_generate import BATCH_SIZE, MAX_NEW_TOKENS, VLQuery, vl_answers

AnswerFn = Callable[[Sequence[VLQuery]], list[str]]
DEMO_N = 100
DEMO_SEED = 1234
MAX_TILES = 6
CHUNK = 256  # task-file records whose images are decoded and answered together


def model_answer_fn(model, tok, *, max_new_tokens: int = MAX_NEW_TOKENS, tile_size: int | None = None,
                    max_tiles: int = MAX_TILES, batch_size: int = BATCH_SIZE) -> AnswerFn:
    """The model's greedy answers as an `AnswerFn`."""
    def answer(queries: Sequence[VLQuery]) -> list[str]:
        return vl_answers(model, tok, queries, max_new_tokens=max_new_tokens, tile_size=tile_size,
                          max_tiles=max_tiles, batch_size=batch_size)
    return answer


def group_accuracy(items: Sequence[dict], key: str, value: str = "score") -> dict[str, dict]:
    """{group: {"n", "accuracy"}} over items by items[i][key] (groups in order of appearance)."""
    groups: dict[str, list[float]] = {}
    for it in items:
        if it.get(key) is not None:
            groups.setdefault(str(it[key]), []).append(float(it[value]))
    return {g: {"n": len(v), "accuracy": mean(v)} for g, v in groups.items()}


def _model_name(model) -> str:
    return "answer_fn" if model is None else getattr(model, "name", None) or type(model).__name__


def _write(result: dict, out_dir: str | Path | None, name: str) -> dict:
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        target = out / name
        write_json(target, result)
        result["json"] = str(target)
    return result


def image_qa_accuracy(model, tok, examples: Sequence, *, answer_fn: AnswerFn | None = None,
                      max_new_tokens: int = MAX_NEW_TOKENS, tile_size: int | None = None,
                      max_tiles: int = MAX_TILES, batch_size: int = BATCH_SIZE,
                      out_dir: str | Path | None = None) -> dict:
    """Accuracy on `synth.VLExample`s, judged by `synth.check_answer`.

    Returns {"task", "n", "accuracy", "by_kind", "by_lang" ({group: {"n", "accuracy"}}),
    "samples" (index, kind, lang, question, answer, prediction, correct)}, plus "json" when
    out_dir is set (written as vl_demo.json)."""
    from lmforge.vl.answers import check_answer

    answer_fn = answer_fn or model_answer_fn(model, tok, max_new_tokens=max_new_tokens, tile_size=tile_size,
                                             max_tiles=max_tiles, batch_size=batch_size)
    examples = list(examples)
    predictions = answer_fn([VLQuery([ex.image], ex.question) for ex in examples]) if examples else []
    samples = []
    for i, (ex, pred) in enumerate(zip(examples, predictions)):
        samples.append({"index": i, "kind": ex.kind, "lang": ex.lang, "question": ex.question,
                        "answer": ex.answer, "prediction": pred, "correct": bool(check_answer(ex, pred))})
    result = {"task": "vl_demo", "model": _model_name(model), "n": len(samples),
              "accuracy": mean([float(s["correct"]) for s in samples]),
              "by_kind": group_accuracy(samples, "kind", "correct"),
              "by_lang": group_accuracy(samples, "lang", "correct"), "samples": samples}
    return _write(result, out_dir, "vl_demo.json")


def run_vl_taskfile(model, tok, path: str | Path, *, answer_fn: AnswerFn | None = None, limit: int | None = None,
                    max_new_tokens: int = MAX_NEW_TOKENS, tile_size: int | None = None, max_tiles: int = MAX_TILES,
                    batch_size: int = BATCH_SIZE, out_dir: str | Path | None = None) -> dict:
    """Score a model on an image task file (`vl_tasks`' format).

    Records that fail to read, or whose image does not load, are skipped with a FILE:LINE
    message (`skipped`, `problems`). `accuracy` is the mean item score (multiple choice: the
    right letter; free-form: exact match, or VQAv2 accuracy with several answers), also
    `by_type` (mc / vqa, vqa with `exact_match`) and `by_category`."""
    from lmforge.vl.images import ImageError, load_image

    path = Path(path)
    records, problems = vl_tasks.read_vl_tasks(path)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    records = records[:limit] if limit else records
    answer_fn = answer_fn or model_answer_fn(model, tok, max_new_tokens=max_new_tokens, tile_size=tile_size,
                                             max_tiles=max_tiles, batch_size=batch_size)
    items = []
    # Images are decoded a chunk at a time, so a large benchmark does not sit in memory at once.
    for start in range(0, len(records), CHUNK):
        usable, queries = [], []
        for rec in records[start:start + CHUNK]:
            try:
                images = [load_image(ref) for ref in rec.images]
            except (ImageError, OSError) as e:
                problems.append(f"{path}:{rec.line}: {e}")
                print(f"skipped: {problems[-1]}", file=sys.stderr)
                continue
            usable.append(rec)
            queries.append(VLQuery(images, vl_tasks.prompt(rec)))
        for rec, text in zip(usable, answer_fn(queries) if queries else []):
            item = {"id": rec.id, "line": rec.line, "type": rec.kind, "category": rec.category,
                    "gold": rec.gold if rec.kind == "mc" else rec.answers, "generation": text}
            item.update(vl_tasks.score(rec, text))
            items.append(item)
    if not items:
        raise vl_tasks.VLTaskError(f"{path}: no record has a readable image: {'; '.join(problems[:3])}")
    by_type = group_accuracy(items, "type")
    if "vqa" in by_type:
        by_type["vqa"]["exact_match"] = mean([it["exact"] for it in items if it["type"] == "vqa"])
    result = {"task": path.stem, "file": str(path), "model": _model_name(model),
              "n": len(items), "skipped": len(problems), "problems": problems[:20],
              "accuracy": mean([it["score"] for it in items]), "by_type": by_type,
              "by_category": group_accuracy(items, "category"), "items": items}
    return _write(result, out_dir, f"vl_{path.stem}.json")


def results_table(result: dict):
    """A rich Table: accuracy overall and by group (kind / language, or type / category)."""
    from rich.table import Table

    table = Table(title=f"{result['task']} - {result['model']}")
    for name, justify in (("group", "left"), ("n", "right"), ("accuracy", "right")):
        table.add_column(name, justify=justify)
    sections = (("kind", "by_kind"), ("lang", "by_lang"), ("type", "by_type"), ("category", "by_category"))
    for label, key in sections:
        for group, v in result.get(key, {}).items():
            table.add_row(f"{label}: {group}", str(v["n"]), f"{100 * v['accuracy']:.1f}")
    table.add_row("all", str(result["n"]), f"{100 * result['accuracy']:.1f}", style="bold")
    return table


def load_vl_checkpoint(checkpoint: str | Path, *, tokenizer: str | Path | None = None, device: str = "auto"):
    """(model, tokenizer) of a vision-language checkpoint directory, ready to evaluate."""
    import torch

    from lmforge.eval.lm import find_tokenizer
    from lmforge.model.vision import load_vl_model
    from lmforge.tokenizer import Tokenizer

    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint directory")
    tok = Tokenizer.load(find_tokenizer(checkpoint, tokenizer))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_vl_model(checkpoint, device=device).eval()
    model.name = checkpoint.name
    return model, tok


def run_vl_checkpoint(checkpoint: str | Path, *, demo: int | None = None, tasks: str | Path | None = None,
                      seed: int = DEMO_SEED, limit: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                      max_tiles: int = MAX_TILES, batch_size: int = BATCH_SIZE, out: str | Path | None = None,
                      tokenizer: str | Path | None = None, device: str = "auto") -> dict:
    """`lmforge eval vl`: the demo's held-out images (`demo` of them, the default) or a task file."""
    from rich.console import Console

    if demo is not None and tasks is not None:
        raise ValueError("pass either --demo N or --tasks FILE, not both")
    if tasks is not None:
        vl_tasks.read_vl_tasks(tasks)  # a bad file fails before the model loads
    checkpoint = Path(checkpoint)
    model, tok = load_vl_checkpoint(checkpoint, tokenizer=tokenizer, device=device)
    out = Path(out) if out is not None else checkpoint.resolve().parent / "eval" / checkpoint.name
    kwargs = dict(max_new_tokens=max_new_tokens, max_tiles=max_tiles, batch_size=batch_size, out_dir=out)
    if tasks is not None:
        result = run_vl_taskfile(model, tok, tasks, limit=limit, **kwargs)
    else:
        from lmforge.vl.synth import demo_split

        _, heldout = demo_split(0, demo or DEMO_N, seed)
        result = image_qa_accuracy(model, tok, heldout[:limit] if limit else heldout, **kwargs)
    console = Console()
    console.print(results_table(result))
    console.print(f"-> {result['json']}")
    return result
