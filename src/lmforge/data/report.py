"""`lmforge data report RUN_DIR`: the funnel of a run, its drop reasons, and precision/recall against
planted truth (WanJuan-CC, arXiv 2402.19282, reports the retention of every stage; docs/papers.md §4).

Documents are counted exactly per stage and language. Tokens are exact at the tokenize stage;
for earlier stages they are estimated from each stage's characters per language times the
tokens-per-character that the tokenize stage measured for that language (marked "~").
When the run's input folder holds a `truth.jsonl` (written by `demo-crawl`), each stage's drops
are scored against the stage each planted page was meant to be dropped at, and the dedup
clusters against the planted duplicate pairs; a truth file of another schema is named with its
first bad line and missing field, and the truth section is skipped (`truth_skipped`). Those
figures are labelled as what they are (`DEMO_TRUTH_NOTE`): the demo's generator wrote both the
planted pages and their truth, so they show that each step works, not how well it filters a real
crawl; the shipped classifiers' figures on labelled data the generator did not write are on their
cards (`lmforge/data/assets/*.md`).
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path

from lmforge.atomic import write_atomic
from lmforge.data.writers import open_atomic

LAST_PHASE = {"map": "map", "dedup": "filter"}
DEMO_TRUTH_NOTE = "measured on the demo crawl's planted truth, which the demo's generator wrote"
CARDS_NOTE = ("the default classifiers' precision/recall on labelled data the generator did not write is on "
              "their cards, src/lmforge/data/assets/*.md")


def load_stats(run_dir: Path) -> tuple[list[str], dict[str, dict]]:
    meta = json.loads((run_dir / "_pipeline.json").read_text())
    stages = {}
    for name in meta["stages"]:
        files = sorted((run_dir / "_stats" / name).glob("*.json"))
        if not files:
            continue
        last = "filter" if any(f.name.startswith("filter-") for f in files) else "map"
        agg: dict = {"docs_in": 0, "docs_out": 0, "n_errors": 0, "errors": [], "seconds": 0.0,
                     "lang_in": Counter(), "lang_out": Counter(), "chars_in": Counter(), "chars_out": Counter(),
                     "drops": defaultdict(Counter), "drops_lang": defaultdict(Counter), "extra": Counter(),
                     "tasks": 0}
        for f in files:
            s = json.loads(f.read_text())
            agg["seconds"] += s["seconds"]
            agg["extra"].update(s["extra"])
            if not f.name.startswith(last + "-"):  # earlier phases re-read the same input: count it once
                continue
            agg["tasks"] += 1
            agg["n_errors"] += s["n_errors"]
            agg["errors"] += s["errors"]
            for k in ("docs_in", "docs_out"):
                agg[k] += s[k]
            for k in ("lang_in", "lang_out", "chars_in", "chars_out"):
                agg[k].update(s[k])
            for step, reasons in s["drops"].items():
                agg["drops"][step].update(reasons)
            for step, langs in s.get("drops_lang", {}).items():
                agg["drops_lang"][step].update(langs)
        stages[name] = agg
    return meta["stages"], stages


def tokens_per_char(tokens: dict[str, int], chars: dict[str, int]) -> dict[str, float]:
    """Tokens per character of each language that has both counts."""
    return {lang: tokens[lang] / chars[lang] for lang in chars if chars[lang] and tokens.get(lang)}


def measured_tokens_per_char(stages: dict[str, dict]) -> dict[str, float]:
    """Tokens per character by language ("*": all languages), as the tokenize stage measured them."""
    for agg in stages.values():
        if agg["extra"].get("tokens"):
            tokens = {lang: agg["extra"].get(f"tokens_{lang}", 0) for lang in agg["chars_in"]}
            ratio = tokens_per_char(tokens, agg["chars_in"])
            ratio["*"] = agg["extra"]["tokens"] / max(1, sum(agg["chars_in"].values()))
            return ratio
    return {}


def estimated_tokens(chars: dict[str, int], ratio: dict[str, float]) -> float | None:
    """Characters per language times tokens per character; a language without a ratio counts at
    the "*" ratio when there is one, else not at all. None when no language has a ratio."""
    known = {lang: n for lang, n in chars.items() if lang in ratio or "*" in ratio}
    if not known and "*" not in ratio:
        return None
    return sum(n * ratio.get(lang, ratio.get("*")) for lang, n in known.items())


def _read_drops(run_dir: Path, stage: str) -> dict[str, tuple[str, str]]:
    out = {}
    for f in sorted((run_dir / "_drops" / stage).glob("*.jsonl.gz")):
        for line in gzip.decompress(f.read_bytes()).decode().splitlines():
            d = json.loads(line)
            out[d["url"]] = (d["step"], d["reason"])
    return out


def _output_texts(folder: Path) -> dict[str, str] | None:
    """url -> text of the documents a stage wrote (its jsonl.gz output; None for another format)."""
    files = sorted(folder.glob("*.jsonl.gz"))
    if not files:
        return None
    texts = {}
    for f in files:
        for line in gzip.decompress(f.read_bytes()).decode().splitlines():
            if line.strip():
                d = json.loads(line)
                texts[d.get("url")] = d.get("text", "")
    return texts


TRUTH_FIELDS = ("url", "kind", "expected", "group", "jaccard")  # what `demo-crawl` writes on every line


class TruthFileError(ValueError):
    """A truth file of another schema: names the file, the line and the missing field."""


def read_truth(path: Path) -> dict[str, dict]:
    """url -> row of a truth.jsonl as `demo-crawl` writes it; TruthFileError on the first row that
    is not a JSON object with every field of TRUTH_FIELDS."""
    truth = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise TruthFileError(f"{path}, line {n}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise TruthFileError(f"{path}, line {n}: expected a JSON object, found {type(row).__name__}")
        missing = [f for f in TRUTH_FIELDS if f not in row]
        if missing:
            raise TruthFileError(f"{path}, line {n}: missing field {missing[0]!r} (a truth file as "
                                 f"`lmforge data demo-crawl` writes it has {', '.join(TRUTH_FIELDS)} on every line)")
        truth[row["url"]] = row
    return truth


def truth_scores(run_dir: Path, stage_names: list[str], truth_path: Path) -> dict:
    """Per-stage precision/recall of drops, and dedup pair precision/recall, against truth.jsonl."""
    truth = read_truth(truth_path)
    dropped_at = {}
    meta = json.loads((run_dir / "_pipeline.json").read_text())
    branches = set(meta.get("branches", []))
    stage_names = [s for s in stage_names if s not in branches]  # side outputs (longctx) are not drops
    for stage in stage_names:
        for url in _read_drops(run_dir, stage):
            dropped_at.setdefault(url, stage)
    # A page neither dropped by a stage nor in the last document stage's output was never read (a corrupt gzip
    # member the reader skipped): "unread", the truth's expectation for planted corrupt members.
    kept = next((t for name in reversed(stage_names) if (t := _output_texts(run_dir / name)) is not None), None)
    unread = {u for u in truth if u not in dropped_at and kept is not None and u not in kept}
    fate = {u: dropped_at.get(u) or ("unread" if u in unread else "kept") for u in truth}
    per_stage = {}
    for name in [*stage_names, "unread"]:
        predicted = unread if name == "unread" else {u for u, s in dropped_at.items() if s == name}
        expected = {u for u, r in truth.items() if name in r["expected"].split("|")}
        if not predicted and not expected:
            continue
        hit = len(predicted & expected)
        per_stage[name] = {"dropped": len(predicted), "planted": len(expected), "correct": hit,
                           "precision": hit / len(predicted) if predicted else None,
                           "recall": hit / len(expected) if expected else None,
                           "planted_dropped_elsewhere": len({u for u in expected if u in dropped_at
                                                             and dropped_at[u] != name})}
    kinds = {}
    for kind in sorted({r["kind"] for r in truth.values()}):
        kinds[kind] = dict(Counter(fate[u] for u, r in truth.items() if r["kind"] == kind))
    result = {"stages": per_stage, "kinds": kinds}
    planted = {u: r["pii"] for u, r in truth.items() if r.get("pii") and kept is not None and u in kept}
    if planted:  # the personal data planted in pages that were kept: how much of it survived masking
        values = [(u, v) for u, pii in planted.items() for vs in pii.values() for v in vs]
        result["pii"] = {"pages": len(planted), "values": len(values),
                         "left_unmasked": sum(v in kept[u] for u, v in values)}
    clusters_file = next(iter(sorted(run_dir.glob("_work/*/clusters.jsonl.gz"))), None)
    if clusters_file is not None:
        result["dedup"] = dedup_scores(run_dir, clusters_file, truth, dropped_at)
    return result


def dedup_scores(run_dir: Path, clusters_file: Path, truth: dict, dropped_at: dict) -> dict:
    stage = clusters_file.parent.name
    meta = json.loads((run_dir / "_pipeline.json").read_text())
    before = set(meta["stages"][: meta["stages"].index(stage)]) - set(meta.get("branches", []))
    reached = {u for u in truth if dropped_at.get(u) not in before}
    cluster_of, kept = {}, set()
    for line in gzip.decompress(clusters_file.read_bytes()).decode().splitlines():
        c = json.loads(line)
        kept.add(c["kept"])
        for u in c["members"]:
            cluster_of[u] = c["kept"]
    groups = defaultdict(list)
    for u, r in truth.items():
        if r["group"] and u in reached:
            groups[r["group"]].append(r)
    # truth pairs: an original and its planted copy, with the copy's Jaccard to it
    truth_pairs = {}
    for members in groups.values():
        base = [r for r in members if r["kind"] == "clean"]
        for r in members:
            if base and r is not base[0]:
                truth_pairs[frozenset((base[0]["url"], r["url"]))] = r["jaccard"]
    found = set()
    by_cluster = defaultdict(list)
    for u, k in cluster_of.items():
        by_cluster[k].append(u)
    for members in by_cluster.values():
        found.update(frozenset(p) for p in itertools.combinations(sorted(members), 2))
    out = {}
    for name, lo in (("jaccard>=0.8", 0.8), ("jaccard>=0.7", 0.7)):
        relevant = {p for p, j in truth_pairs.items() if j is not None and j >= lo}
        out[name] = {"pairs": len(relevant), "recall": len(relevant & found) / len(relevant) if relevant else None}
    true_found = {p for p in found if truth_pairs.get(p) is not None and truth_pairs[p] >= 0.7}
    related = {p for p in found if p in truth_pairs}
    out["found_pairs"] = len(found)
    out["precision"] = len(true_found) / len(found) if found else None           # planted pair with J >= 0.7
    out["precision_related"] = len(related) / len(found) if found else None      # any planted pair
    below = {p: j for p, j in truth_pairs.items() if j is not None and j < 0.7}
    out["found_below_threshold"] = {f"{j:.2f}": int(p in found) for p, j in sorted(below.items(), key=lambda x: x[1])}
    keep_ok = [r["expected"] == "keep" for members in groups.values() for r in members if r["url"] in kept]
    out["kept_latest_dump"] = sum(keep_ok) / len(keep_ok) if keep_ok else None
    return out


def build_report(run_dir: str | Path, truth: str | Path | None = None) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "_pipeline.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a data run folder (no _pipeline.json); run `lmforge data run RECIPE` first")
    names, stages = load_stats(run_dir)
    ratio = measured_tokens_per_char(stages)
    funnel = []
    first_in = None
    for name in names:
        if name not in stages:
            continue
        agg = stages[name]
        first_in = first_in if first_in is not None else agg["docs_in"]
        tokens_exact = agg["extra"].get("tokens")
        funnel.append({"stage": name, "docs_in": agg["docs_in"], "docs_out": agg["docs_out"],
                       "kept_of_stage": agg["docs_out"] / agg["docs_in"] if agg["docs_in"] else None,
                       "kept_of_input": agg["docs_out"] / first_in if first_in else None,
                       "tokens_out": tokens_exact if tokens_exact else estimated_tokens(agg["chars_out"], ratio),
                       "tokens_exact": bool(tokens_exact), "lang_out": dict(agg["lang_out"]),
                       "chars_out": dict(agg["chars_out"]),
                       "lang_in": dict(agg["lang_in"]), "drops": {k: dict(v) for k, v in agg["drops"].items()},
                       "drops_lang": {k: dict(v) for k, v in agg["drops_lang"].items()},
                       "errors": agg["n_errors"], "error_examples": agg["errors"][:20],
                       "seconds": round(agg["seconds"], 2), "extra": dict(agg["extra"])})
    report = {"run_dir": str(run_dir), "funnel": funnel}
    meta = json.loads((run_dir / "_pipeline.json").read_text())
    truth_path = Path(truth) if truth else Path(meta["input"]) / "truth.jsonl"
    if truth_path.is_file():
        try:
            report["truth"] = truth_scores(run_dir, names, truth_path)
        except TruthFileError as e:  # another tool's truth.jsonl beside the input: report the rest
            report["truth_skipped"] = f"{e}; the truth section is skipped"
        else:
            report["truth"]["measured_on"] = f"measured on {truth_path}" if truth else DEMO_TRUTH_NOTE
    return report


FUNNEL_TEXT_COLUMNS = ("stage", "top drop reasons", "drop reasons")


def funnel_table(funnel: list[dict], top_reasons: int | None = 3) -> tuple[list[str], list[list[str]]]:
    """The funnel as text: (column names, one row per stage), the one table that `lmforge data report`,
    `lmforge run` and its report page show. `top_reasons`: drop reasons listed per stage (None: all).
    A column no stage has a value for (tokens before any tokenizer) is left out."""
    header = ["stage", "docs in", "docs out", "kept", "of input", "tokens out", "en / zh out", "errors",
              "top drop reasons" if top_reasons else "drop reasons"]
    rows = []
    for row in funnel:
        reasons = Counter()
        for step, rs in row["drops"].items():
            for r, n in rs.items():
                reasons[f"{step}:{r}"] += n
        tokens = row["tokens_out"]
        tok = "" if tokens is None else (f"{tokens:,.0f}" if row["tokens_exact"] else f"~{tokens:,.0f}")
        rows.append([row["stage"], f"{row['docs_in']:,}", f"{row['docs_out']:,}", _pct(row["kept_of_stage"]),
                     _pct(row["kept_of_input"]), tok,
                     f"{row['lang_out'].get('en', 0)} / {row['lang_out'].get('zh', 0)}", str(row["errors"]),
                     ", ".join(f"{k} {n}" for k, n in reasons.most_common(top_reasons))])
    shown = [i for i in range(len(header)) if any(r[i] for r in rows)] if rows else range(len(header))
    return [header[i] for i in shown], [[r[i] for i in shown] for r in rows]


def funnel_console_table(funnel: list[dict], title: str):
    """`funnel_table` as a rich Table for the terminal."""
    from rich.table import Table

    header, rows = funnel_table(funnel)
    table = Table(title=title)
    for col in header:
        table.add_column(col, justify="left" if col in FUNNEL_TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_report(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(funnel_console_table(report["funnel"], f"data funnel: {report['run_dir']}"))
    by_lang = Table(title="drops by step and language")
    for col in ("stage", "step", "en", "zh", "other"):
        by_lang.add_column(col, justify="left" if col in ("stage", "step") else "right")
    for row in report["funnel"]:
        for step, langs in row["drops_lang"].items():
            other = sum(n for lang, n in langs.items() if lang not in ("en", "zh"))
            by_lang.add_row(row["stage"], step, str(langs.get("en", 0)), str(langs.get("zh", 0)), str(other))
    console.print(by_lang)
    counters = [(row["stage"], ", ".join(f"{k} {v:,}" for k, v in sorted(row["extra"].items())))
                for row in report["funnel"] if row.get("extra")]
    if counters:  # what steps count besides drops: PII replacements, skipped gzip members, tokens, ...
        t = Table(title="step counters")
        t.add_column("stage")
        t.add_column("counters")
        for stage, text in counters:
            t.add_row(stage, text)
        console.print(t)
    if report.get("truth_skipped"):
        console.print(f"truth: {report['truth_skipped']}", style="yellow", markup=False, highlight=False,
                      soft_wrap=True)
    truth = report.get("truth")
    if truth:
        note = truth.get("measured_on", DEMO_TRUTH_NOTE)
        t = Table(title=f"drops against the planted truth (truth.jsonl), {note}", caption=CARDS_NOTE)
        for col in ("stage", "dropped", "planted", "precision", "recall", "planted, dropped elsewhere"):
            t.add_column(col, justify="right" if col != "stage" else "left")
        for stage, s in truth["stages"].items():
            t.add_row(stage, str(s["dropped"]), str(s["planted"]), _pct(s["precision"]), _pct(s["recall"]),
                      str(s["planted_dropped_elsewhere"]))
        console.print(t)
        k = Table(title="where each planted kind ended")
        k.add_column("kind")
        k.add_column("dropped at / kept")
        for kind, where in truth["kinds"].items():
            k.add_row(kind, ", ".join(f"{s} {n}" for s, n in sorted(where.items())))
        console.print(k)
        if "pii" in truth:
            p = truth["pii"]
            console.print(f"pii ({note}): {p['values']} planted values in {p['pages']} kept pages, "
                          f"{p['left_unmasked']} left unmasked")
        if "dedup" in truth:
            d = truth["dedup"]
            console.print(f"dedup ({note}): recall {_pct(d['jaccard>=0.8']['recall'])} of {d['jaccard>=0.8']['pairs']} planted "
                          f"pairs with Jaccard >= 0.8 ({_pct(d['jaccard>=0.7']['recall'])} of "
                          f"{d['jaccard>=0.7']['pairs']} >= 0.7); precision {_pct(d['precision'])} of "
                          f"{d['found_pairs']} pairs found; latest dump kept in {_pct(d['kept_latest_dump'])} of clusters")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def plot_funnel(report: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["funnel"]
    names = [r["stage"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for lang, color in (("en", "#4477aa"), ("zh", "#cc6677")):
        axes[0].bar(names, [r["lang_out"].get(lang, 0) for r in rows], color=color, label=lang,
                    bottom=[r["lang_out"].get("en", 0) if lang == "zh" else 0 for r in rows])
    axes[0].set_title("documents kept after each stage")
    axes[0].legend()
    tokens = [r["tokens_out"] or 0 for r in rows]
    axes[1].bar(names, tokens, color="#228833")
    axes[1].set_title("tokens kept (estimated before tokenize)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path = Path(path)
    with open_atomic(path) as f:
        fig.savefig(f, dpi=100, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def report(run_dir: str | Path, truth: str | Path | None = None, console=None) -> dict:
    """Build, print and save (report.json, report.png) the report of a run folder."""
    rep = build_report(run_dir, truth)
    print_report(rep, console)
    out = Path(run_dir)
    write_atomic(out / "report.json", json.dumps(rep, indent=1, ensure_ascii=False, default=str) + "\n")
    plot_funnel(rep, out / "report.png")
    return rep
