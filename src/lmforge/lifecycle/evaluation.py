"""The `eval` stage of `lmforge run`: the run's model read back from disk and measured (InternLM2
section 5).

Held-out perplexity and bits per byte per language (the validation documents the shards stage set aside), the
benchmark tasks with `limit` examples each (OpenCompass-style PPL, generation and code modes), and
the Needle-in-a-Haystack grid with its heatmap; the summary is what the run-stage record keeps and
the report reads. Optionally NeedleBench's multi-needle and multi-hop grids (`niah_variants`) and the
user's LongBench-style task files (`long_tasks`) on the final model. With `before` (the model as the stage before the long-context one left it), the
same NIAH grid runs on it too and one picture shows both heatmaps side by side, so the long stage's
effect is visible (InternLM2 section 3.2's 4k -> 32k stage; docs/papers.md §2, §9).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from lmforge.recipe import EvalSection


def _niah_summary(r: dict, folder: Path) -> dict:
    return {"average": r["average"], "exact_average": r["exact_average"], "lengths": r["lengths"],
            "depths": r["depths"], "scores": r["scores"], "exact": r["exact"], "window": r["window"],
            "heatmap": str(Path(r["heatmap"]).relative_to(folder)),
            **({"answer_logprob_by_length": r["answer_logprob_by_length"]} if "answer_logprob_by_length" in r else {})}


def evaluate_model(section: EvalSection, model_dir: Path, shards_dir: Path, device: str, seed: int, folder: Path,
                   console: Console, before: tuple[str, Path] | None = None) -> dict:
    """`before`: (stage name, checkpoint) of the model before the last training stage, for NIAH."""
    from lmforge.eval.harness import run_eval
    from lmforge.eval.niah import run_niah_checkpoint
    from lmforge.eval.perplexity import run_perplexity

    summary: dict = {}
    files = [str(shards_dir / f"val_{lang}.txt") for lang in section.ppl_langs
             if (shards_dir / f"val_{lang}.txt").is_file()]
    if files:
        ppl = run_perplexity(model_dir, langs=(), files=files, max_windows=section.ppl_max_windows, device=device,
                             out=folder / "perplexity.json")
        summary["perplexity"] = {Path(name).stem.removeprefix("val_"): {k: r[k] for k in ("tokens", "ppl",
                                                                                        "bits_per_byte")}
                                 for name, r in ppl.items()}
    if files and section.bpb:
        from lmforge.eval.bpb import run_bpb

        bpb = run_bpb(model_dir, files, device=device, max_chars=section.bpb_max_chars, out=folder / "bpb.json")
        summary["bpb"] = {Path(name).stem.removeprefix("val_"): r for name, r in bpb.items()}
    if section.tasks:
        results = run_eval(model_dir, section.tasks, limit=section.limit, out=folder / "benchmarks", device=device,
                           max_new_tokens=section.max_new_tokens, seed=seed, show_progress=console.is_terminal)
        summary["benchmarks"] = {name: {"mode": t["mode"], "n": t["n"], "metrics": t["metrics"],
                                        "seconds": t.get("seconds")} for name, t in results["tasks"].items()}
    if section.niah_kinds:
        niah = run_niah_checkpoint(model_dir, kinds=section.niah_kinds, lengths=section.niah_lengths or None,
                                   depths=section.niah_depths, repeats=section.niah_repeats, out=folder / "niah",
                                   device=device, seed=seed)
        summary["niah"] = {kind: _niah_summary(r, folder) for kind, r in niah.items()}
        if before is not None and section.niah_before:
            from lmforge.eval.heatmap import plot_heatmaps

            stage, before_dir = before
            lengths = next(iter(niah.values()))["lengths"]  # the final model's grid, not the earlier window's
            earlier = run_niah_checkpoint(before_dir, kinds=section.niah_kinds, lengths=lengths,
                                          depths=section.niah_depths, repeats=section.niah_repeats,
                                          out=folder / "niah_before", device=device, seed=seed)
            summary["niah_before"] = {"stage": stage, **{kind: _niah_summary(r, folder) for kind, r in earlier.items()}}
            for kind, r in niah.items():
                png = plot_heatmaps([{**earlier[kind], "title": f"after '{stage}' only"},
                                     {**r, "title": "after the long-context stage"}],
                                    folder / "niah" / f"niah_{kind}_before_after.png")
                summary["niah"][kind]["before_after"] = str(png.relative_to(folder))
    if section.niah_variants:
        summary["niah_variants"] = _variants(section, model_dir, device, seed, folder)
    if section.long_tasks:
        from lmforge.eval.longtask import run_long_checkpoint

        summary["long_tasks"] = {}
        for path in section.long_tasks:
            r = run_long_checkpoint(path, model_dir, metric=section.long_metric, out=folder, device=device)
            summary["long_tasks"][r["task"]] = {k: r[k] for k in ("file", "metric", "n", "skipped", "score",
                                                                   "by_bucket", "max_length")}
    return summary


def _variants(section: EvalSection, model_dir: Path, device: str, seed: int, folder: Path) -> dict:
    """The multi-needle / multi-hop grids, keyed "<kind>_<variant>", on the single grid's lengths."""
    from lmforge.eval.niah import run_niah_checkpoint

    out = {}
    for variant in section.niah_variants:
        results = run_niah_checkpoint(model_dir, kinds=section.niah_variant_kinds, lengths=section.niah_lengths or None,
                                      depths=section.niah_depths, repeats=section.niah_repeats, out=folder / "niah",
                                      device=device, seed=seed, variant=variant)
        for kind, r in results.items():
            out[f"{kind}_{variant}"] = {"kind": kind, "variant": variant, "average": r["average"],
                                        "exact_average": r["exact_average"], "lengths": r["lengths"],
                                        "window": r["window"], "scores": r["scores"],
                                        "heatmap": str(Path(r["heatmap"]).relative_to(folder))}
    return out
