"""Reports: results JSON -> Markdown and console tables; `compare` puts checkpoints side by side.

One row per (task, metric), one column per results file, values in percent (OpenCompass's
convention), the best of a row in bold when several checkpoints are compared. Tasks with
subjects (MMLU, C-Eval, CMMLU) get a per-subject table with `groups=True`.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.eval.results import load_results


def column_names(results: list[dict]) -> list[str]:
    """Model names, disambiguated by their folder when two share a name."""
    names = [r["model"].get("name", "model") for r in results]
    out = []
    for r, name in zip(results, names):
        if names.count(name) > 1:
            where = Path(r["model"].get("path") or r.get("source", "")).parent.name
            name = f"{where}/{name}" if where else name
        out.append(name)
    repeated = {name for name in out if out.count(name) > 1}  # still equal: number them
    seen: dict[str, int] = {}
    for i, name in enumerate(out):
        if name in repeated:
            seen[name] = seen.get(name, 0) + 1
            out[i] = f"{name} #{seen[name]}"
    return out


def rows(results: list[dict], groups: bool = False) -> list[tuple[str, str, list[float | None], list[int | None]]]:
    """(task, metric, value per results file, items per results file) in first-seen order."""
    keys: list[tuple[str, str, str | None]] = []
    for r in results:
        for task, summary in r["tasks"].items():
            for metric in summary.get("metrics", {}):
                if (task, metric, None) not in keys:
                    keys.append((task, metric, None))
            if groups:
                for g, m in summary.get("groups", {}).items():
                    for metric in m:
                        if metric != "n" and (task, metric, g) not in keys:
                            keys.append((task, metric, g))
    out = []
    for task, metric, g in keys:
        values, counts = [], []
        for r in results:
            summary = r["tasks"].get(task, {})
            source = summary.get("groups", {}).get(g, {}) if g else summary.get("metrics", {})
            values.append(source.get(metric))
            counts.append(summary.get("groups", {}).get(g, {}).get("n") if g else summary.get("n"))
        out.append((task if g is None else f"{task}/{g}", metric, values, counts))
    return out


def _cell(value: float | None, best: bool) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:.2f}"
    return f"**{text}**" if best else text


def markdown_table(results: list[dict], groups: bool = False) -> str:
    names = column_names(results)
    lines = ["| task | metric | n | " + " | ".join(names) + " |",
             "|---|---|---:|" + "---:|" * len(names)]
    for task, metric, values, counts in rows(results, groups):
        ns = sorted({str(n) for n in counts if n is not None})
        present = [v for v in values if v is not None]
        best = max(present) if len(results) > 1 and present else None
        cells = [_cell(v, v is not None and v == best) for v in values]
        lines.append(f"| {task} | {metric} | {'/'.join(ns)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_results(results: list[dict], groups: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    names = column_names(results)
    table = Table(title="lmforge eval (percent)")
    for col in ("task", "metric", *names):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for task, metric, values, _ in rows(results, groups):
        table.add_row(task, metric, *[_cell(v, False) for v in values])
    Console().print(table)


def compare(paths: list[str | Path], out: str | Path | None = None, groups: bool = False,
            print_table: bool = True) -> str:
    """`lmforge eval compare`: a side-by-side Markdown table of several results files."""
    if not paths:
        raise ValueError("compare needs at least one results.json (or a folder holding one)")
    results = [load_results(p) for p in paths]
    text = markdown_table(results, groups)
    if out is not None:
        Path(out).write_text(text + "\n", encoding="utf-8")
    if print_table:
        print_results(results, groups)
    return text
