"""The cards of the shipped classifiers: what each was trained on, its size, and its precision and
recall on a labelled set that `lmforge.data.synthetic` (the demo crawl's generator) did not write.

Paper: WanJuan-CC, arXiv 2402.19282, stages 4-5; docs/papers.md §4.

    python -m lmforge.data.classifier_cards            # print every default's figures
    python -m lmforge.data.classifier_cards --write    # and rewrite assets/<name>.md with them

The labelled set of each default has label 1 for the documents its filter should drop (toxic,
pornographic, advertising, disfluent) and is made of:

* `assets/classifier_eval.jsonl`: 342 short texts written by hand for this set, in English and
  Chinese: insults and harassment, adult-site spam, advertising, disfluent web text (SEO keyword
  lists, broken machine translation), and hard negatives for each (criticism without insults,
  medical and sex-education text, news about prices and sales, product reviews). No real toxic
  comments or adult pages install offline, so these stand in for them: read them before trusting
  a figure.
* real text that training never saw (`lmforge.data.real_text`, split "eval"): 30 passages from
  each of its five sources (Shakespeare, Python docs, docstrings, People's Daily, Chinese reviews),
  as negatives; for fluency, 15 of each source word-shuffled (`corrupt(..., "shuffle_all")`) as positives. Those
  positives are made by the same kind of corruption the fluency model trained on, so the fluency
  recall on them is easier than on real disfluent pages; the hand-written rows are the harder part.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from lmforge.data import real_text
from lmforge.data.classifier import ASSETS, LinearScorer, Scorer

NAMES = ("toxic", "porn", "not_ad", "fluency")
TASK = {"toxic": "toxic", "porn": "porn", "not_ad": "ad", "fluency": "fluency"}
SCORE_FIELD = {"toxic": "toxic_score", "porn": "porn_score", "not_ad": "not_ad_score", "fluency": "fluency_score"}
DROP_ABOVE = {"toxic": True, "porn": True, "not_ad": False, "fluency": False}
THRESHOLDS = {"toxic": (0.5,), "porn": (0.5,), "not_ad": (0.5, 0.9), "fluency": (0.5,)}   # 0.9: the demo recipe's
REAL_PER_SOURCE = 30
SHUFFLED_PER_SOURCE = 15

REAL = "the training split of `lmforge.data.real_text`"
TRAINED_ON = {
    "toxic": (
        "English: alt-profanity-check 1.9.1 (TF-IDF + calibrated linear SVM over 15,442 words, trained by its "
        "authors on real comments) as a teacher. Its weights x idf start the student's word weights (one scale "
        "and a bias fitted), then the student is trained on 8,000 real texts from " + REAL + " (Shakespeare, Python "
        "docs, standard-library docstrings; half single sentences), half of them with 10-40% of the words of "
        "1-3 lines replaced by words of the teacher's vocabulary (half from its 1,500 most toxic words, half "
        "from all), labelled with the teacher's probability, with L2 towards the starting weights. Chinese: "
        "6,000 texts of People's Daily and product reviews; a third with words of glin-profanity's Chinese "
        "list inserted (its abusive part, `train_defaults.ZH_ABUSE`; also in the starting weights), labelled "
        "1; a third with pieces of those words (奶奶 of 他奶奶的) and a third clean, labelled 0."),
    "porn": (
        "6,000 real texts from " + REAL + " (English: Shakespeare, Python docs, docstrings; Chinese: People's Daily, "
        "reviews; half single sentences). A quarter have 1-3 adult terms inserted into 1-3 lines, labelled 1: "
        "glin-profanity's English list (LDNOOBW, made to filter adult content) less its insults, slurs and "
        "clinical words (`train_defaults.EN_NOT_ADULT`), and the sexual part of its Chinese list (`ZH_SEXUAL`); "
        "the terms also start the weights. The others are labelled 0: insults inserted instead (the toxicity "
        "teacher's most toxic English words outside that list; `ZH_ABUSE`), pieces of the Chinese terms "
        "inserted, or left clean."),
    "not_ad": (
        "`assets/ads_train.jsonl`: 120 advertising lines (60 English, 60 Chinese) written by hand for this "
        "purpose from the patterns of product pages, promotions, loan and job spam, on their own (1-4 lines) "
        "or inserted into real texts from " + REAL + " (2-6 lines), labelled 0 (not_ad is high for good text); against real "
        "text labelled 1, the Chinese product reviews among it (commercial words without advertising). "
        "6,000 texts."),
    "fluency": (
        "8,000 real texts from " + REAL + " (Shakespeare, Python docs, docstrings, People's Daily, reviews; half "
        "single sentences), half of them labelled 1, the other half corrupted and labelled 0: words (Chinese: "
        "characters) shuffled per line or per passage, adjacent pairs swapped, a few words repeated (keyword "
        "stuffing), or words resampled from the text's own frequencies (`real_text.corrupt`)."),
}
SET_NOTE = {
    "toxic": "hand-written insults (40 English, 30 Chinese) against hand-written hard negatives (30, 20) and "
             "150 passages of held-out real text",
    "porn": "hand-written adult-site spam (30 English, 25 Chinese) against hand-written hard negatives "
            "(medical, sex education, names; 20, 15), the 70 hand-written insults (insults are not porn) and "
            "150 passages of held-out real text",
    "not_ad": "hand-written advertising (35 English, 35 Chinese; none of it in the training lines) against "
              "hand-written hard negatives (news about sales and prices, reviews; 20, 20) and 150 passages "
              "of held-out real text",
    "fluency": "22 hand-written disfluent texts and 75 word-shuffled held-out passages against 150 held-out "
               "real passages and the 90 hand-written fluent negatives of the other sets",
}


def hand_rows(task: str | None = None) -> list[dict]:
    """Rows {"task", "lang", "label", "text"} of `assets/classifier_eval.jsonl`."""
    rows = [json.loads(line) for line in (ASSETS / "classifier_eval.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [r for r in rows if task is None or r["task"] == task]


def labelled_set(name: str, seed: int = 0) -> list[dict]:
    """The labelled set of one default: rows {"text", "label" (1: drop), "lang", "source"}."""
    task = TASK[name]
    rows = [dict(r, source="hand") for r in hand_rows(task)]
    if name == "porn":
        rows += [dict(r, label=0, source="hand:toxic") for r in hand_rows("toxic") if r["label"] == 1]
    if name == "fluency":
        rows += [dict(r, label=0, source=f"hand:{r['task']}") for r in hand_rows()
                 if r["task"] in ("toxic", "ad") and r["label"] == 0]
    rng = random.Random(seed)
    for source, lang in real_text.SOURCES.items():
        for text in real_text.passages(source, "eval", REAL_PER_SOURCE, rng, max_lines=4):
            rows.append({"text": text, "label": 0, "lang": lang, "source": source})
        if name == "fluency":
            for text in real_text.passages(source, "eval", SHUFFLED_PER_SOURCE, rng, max_lines=4):
                rows.append({"text": real_text.corrupt(text, "shuffle_all", rng), "label": 1, "lang": lang,
                             "source": f"{source}:shuffled"})
    return rows


def precision_recall(drop: list[bool], labels: list[int]) -> tuple[float | None, float | None]:
    tp = sum(d and y == 1 for d, y in zip(drop, labels))
    n_drop, n_pos = sum(drop), sum(y == 1 for y in labels)
    return (tp / n_drop if n_drop else None), (tp / n_pos if n_pos else None)


def figures(name: str, scorer: Scorer | None = None) -> list[dict]:
    """Precision and recall of dropping (score above the threshold for toxic/porn, below it for
    not_ad/fluency), per threshold, for all rows and per language."""
    rows = labelled_set(name)
    scorer = scorer or LinearScorer(str(ASSETS / f"{name}.npz"))
    scores = scorer.score([r["text"] for r in rows])
    out = []
    for t in THRESHOLDS[name]:
        for lang in ("all", "en", "zh"):
            mine = [(s, r["label"]) for s, r in zip(scores, rows) if lang == "all" or r["lang"] == lang]
            drop = [s > t if DROP_ABOVE[name] else s < t for s, _ in mine]
            p, r = precision_recall(drop, [y for _, y in mine])
            out.append({"threshold": t, "lang": lang, "n": len(mine), "positives": sum(y for _, y in mine),
                        "precision": p, "recall": r})
    return out


def teacher_figures() -> list[dict] | None:
    """alt-profanity-check itself on the English rows of the toxic set (None when not installed)."""
    try:
        from profanity_check import predict_prob
    except ImportError:
        return None
    rows = [r for r in labelled_set("toxic") if r["lang"] == "en"]
    drop = [p > 0.5 for p in predict_prob([r["text"] for r in rows])]
    p, r = precision_recall(drop, [row["label"] for row in rows])
    return [{"threshold": 0.5, "lang": "en", "n": len(rows), "positives": sum(x["label"] for x in rows),
             "precision": p, "recall": r}]


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def table(rows: list[dict]) -> str:
    lines = ["| threshold | language | documents | to drop | precision | recall |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['threshold']:g} | {r['lang']} | {r['n']} | {r['positives']} | {_f(r['precision'])} | "
              f"{_f(r['recall'])} |" for r in rows]
    return "\n".join(lines)


ROW_RE = re.compile(r"^\| ([\d.]+) \| (all|en|zh) \| (\d+) \| (\d+) \| ([\d.]+|-) \| ([\d.]+|-) \|$", re.M)


def card_figures(name: str) -> list[dict]:
    """The figures a card states (the first table of `assets/<name>.md`)."""
    text = (ASSETS / f"{name}.md").read_text(encoding="utf-8")
    text = text.split("\n\n## ", 1)[0] if "\n\n## " in text else text
    return [{"threshold": float(m[0]), "lang": m[1], "n": int(m[2]), "positives": int(m[3]),
             "precision": None if m[4] == "-" else float(m[4]), "recall": None if m[5] == "-" else float(m[5])}
            for m in ROW_RE.findall(text)]


def card(name: str, path: Path, rows: list[dict], teacher: list[dict] | None = None) -> str:
    size = path.stat().st_size
    direction = "above" if DROP_ABOVE[name] else "below"
    text = [f"# {name}.npz: the default `{SCORE_FIELD[name]}` classifier",
            "",
            f"**Trained on** (`python -m lmforge.data.train_defaults {name}`): {TRAINED_ON[name]} None of it comes "
            "from `lmforge.data.synthetic`, the generator of the demo crawl.",
            "",
            f"**Model**: logistic regression over hashed word unigrams and bigrams (characters for Chinese), "
            f"2^17 float16 weights; {size / 1024:.0f} KB.",
            "",
            f"**Measured** on its labelled set (`lmforge.data.classifier_cards`; label 1 = the filter should drop "
            f"it, i.e. a score {direction} the threshold): {SET_NOTE[name]}.",
            "",
            table(rows),
            "",
            f"Recompute: `python -m lmforge.data.classifier_cards {name}` (`--write` rewrites this card). "
            "tests/data/test_classifier.py checks that the shipped model reaches these figures (less 0.02)."]
    if teacher:
        text += ["", "## The teacher", "",
                 "alt-profanity-check itself on the English rows of the same set (its own tokenizer, no "
                 "Chinese):", "", table(teacher)]
    return "\n".join(text) + "\n"


def write_card(name: str, path: Path | None = None) -> list[dict]:
    """Measure the model at `path` (default: the shipped asset) and write `<name>.md` beside it."""
    from lmforge.atomic import write_atomic

    path = Path(path or ASSETS / f"{name}.npz")
    rows = figures(name, LinearScorer(str(path)))
    write_atomic(path.with_suffix(".md"), card(name, path, rows, teacher_figures() if name == "toxic" else None))
    return rows


def summary(name: str, rows: list[dict]) -> str:
    return f"{name}: " + "; ".join(f"t={r['threshold']:g} {r['lang']} P {_f(r['precision'])} R {_f(r['recall'])}"
                                   for r in rows)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Precision and recall of the shipped classifiers on their labelled sets.")
    parser.add_argument("names", nargs="*", default=list(NAMES), help=f"which defaults ({', '.join(NAMES)})")
    parser.add_argument("--write", action="store_true", help="rewrite assets/<name>.md with the figures")
    args = parser.parse_args(argv)
    for name in args.names:
        rows = write_card(name) if args.write else figures(name)
        print(summary(name, rows))


if __name__ == "__main__":
    main()
