"""The report page as data (sections of paragraphs, tables, images, code), written as Markdown or HTML.

One structure, two writers, so report.md and report.html never disagree. The HTML is a single
static file: CSS inline, images embedded as base64 data URIs, and only the small render-check
script of `lmforge.report.render` (which records broken images for the headless-browser check).
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.atomic import write_atomic


@dataclass
class Section:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", header, rows))

    def image(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", Path(path), alt))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))


@dataclass
class ReportPage:
    title: str
    intro: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def paragraph(self, text: str) -> None:
        self.intro.append(text)

    def section(self, title: str) -> Section:
        self.sections.append(Section(title))
        return self.sections[-1]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_markdown(page: ReportPage, path: Path) -> None:
    lines = [f"# {page.title}", "", *page.intro, ""]
    for sec in page.sections:
        lines += [f"## {sec.title}", ""]
        for block in sec.blocks:
            kind = block[0]
            if kind == "p":
                lines += [block[1], ""]
            elif kind == "table":
                header, rows = block[1], block[2]
                lines.append("| " + " | ".join(map(_md_cell, header)) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
                lines.append("")
            elif kind == "img":
                lines += [f"![{block[2]}]({os.path.relpath(block[1], path.parent)})", ""]
            elif kind == "code":
                lines += ["```json", block[1], "```", ""]
    write_atomic(path, "\n".join(lines))


STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #4477aa; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f3f6fa; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 1em 0; }
pre { background: #f6f8fa; padding: 1em; overflow: auto; max-height: 30em; font-size: 13px; }
code { background: #f6f8fa; padding: 0 .2em; }
nav a { margin-right: 1em; }
"""


def _inline(text: str) -> str:
    """Escape, then render `code` spans (the only Markdown the paragraphs use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _is_number(text: str) -> bool:
    t = str(text).replace(",", "").replace("%", "").strip()
    try:
        float(t)
        return True
    except ValueError:
        return False


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_html(page: ReportPage, path: Path) -> None:
    from lmforge.report.render import CHECK_SCRIPT

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(page.title)}</title>", f"<style>{STYLE}</style></head><body>",
           f"<h1>{html.escape(page.title)}</h1>"]
    out += [f"<p>{_inline(p)}</p>" for p in page.intro]
    out.append("<nav>" + "".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(page.sections))
               + "</nav>")
    for i, sec in enumerate(page.sections):
        out.append(f'<h2 id="s{i}">{html.escape(sec.title)}</h2>')
        for block in sec.blocks:
            kind = block[0]
            if kind == "p":
                out.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "table":
                out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
                           + "</tr></thead><tbody>")
                for row in block[2]:
                    out.append("<tr>" + "".join(f'<td class="n">{html.escape(str(c))}</td>' if _is_number(c)
                                                else f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
                out.append("</tbody></table>")
            elif kind == "img":
                out.append(f'<img src="{_data_uri(block[1])}" alt="{html.escape(block[2])}">')
            elif kind == "code":
                out.append(f"<pre>{html.escape(block[1])}</pre>")
    out += [CHECK_SCRIPT, "</body></html>"]
    write_atomic(path, "\n".join(out) + "\n")
