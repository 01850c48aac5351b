"""A result table the benchmarks share: printed with rich, and optionally written as Markdown for
docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table


def print_table(console, title: str, cols: tuple[str, ...], rows: list[tuple[str, ...]],
                markdown: str | None = None) -> None:
    """Right-aligned columns on the console; with `markdown`, the same table written to that file."""
    table = Table(title=title)
    for col in cols:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        Path(markdown).write_text("\n".join(lines) + "\n")
