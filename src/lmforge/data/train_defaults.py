"""Train the default classifiers shipped in `lmforge/data/assets/`.

Paper: WanJuan-CC, arXiv 2402.19282, stages 4-5; docs/papers.md §4.

    python -m lmforge.data.train_defaults            # rewrites assets/{toxic,porn,not_ad,fluency}.npz

Each model is a hashed-n-gram logistic regression (`lmforge.data.classifier`) trained on labelled documents built from the
embedded corpora and the synthetic sentences of `lmforge.data.synthetic` (half 0 of each word
list; the demo crawl plants half 1). Positives of one kind are trained against clean text *and*
the other planted kinds, so that, e.g., the toxicity model does not fire on advertising.
Deterministic for a given seed; prints accuracy on a held-out tenth and the file sizes.
"""

from __future__ import annotations

import random
from pathlib import Path

from lmforge import corpora
from lmforge.data import synthetic
from lmforge.data.classifier import ASSETS, train_classifier

KINDS = ("toxic", "porn", "ad")


def passages(seed: int, n: int) -> list[tuple[str, list[str]]]:
    """(language, paragraphs) of 2-12 lines, half English (Shakespeare + Python docs), half Chinese."""
    rng = random.Random(seed)
    en_lines = [line.strip() for line in corpora.english_text(3_000_000).splitlines() if len(line.strip()) > 30]
    en_lines += [line.strip() for line in corpora.pydoc_text(300_000).splitlines() if len(line.strip()) > 30]
    zh_lines = [line for line in corpora.chinese_news_lines() if len(line) > 20]
    out = []
    for i in range(n):
        lines, lang = (zh_lines, "zh") if i % 2 else (en_lines, "en")
        start = rng.randrange(len(lines) - 12)
        out.append((lang, lines[start:start + rng.randint(2, 12)]))
    return out


def labelled_sets(seed: int = 0, n: int = 3000) -> dict[str, list[tuple[str, int]]]:
    rng = random.Random(seed)
    base = passages(seed, n)
    planted = {}
    for kind in KINDS:
        planted[kind] = []
        for lang, lines in base[: n // 3]:
            bad = synthetic.sentences(kind, lang, rng.randint(1, max(2, len(lines))), rng, half=0)
            planted[kind].append("\n".join(synthetic.mix(lines, bad, rng)))
    clean = ["\n".join(lines) for _, lines in base]
    # bilingual pages are clean too: interleave an English and a Chinese passage
    clean += ["\n".join(a for pair in zip(base[i][1], base[i + 1][1]) for a in pair) for i in range(0, n // 5, 2)]
    salad = [synthetic.word_salad(text, rng) for text in clean[: n // 2]] + \
            [synthetic.keyboard_mash(rng.randint(20, 300), rng) for _ in range(n // 10)]
    sets = {}
    for kind, name in (("toxic", "toxic"), ("porn", "porn")):
        others = [t for k in KINDS if k != kind for t in planted[k]]
        sets[name] = [(t, 1) for t in planted[kind]] + [(t, 0) for t in clean + others]
    sets["not_ad"] = [(t, 0) for t in planted["ad"]] + [(t, 1) for t in clean + planted["toxic"] + planted["porn"]]
    sets["fluency"] = [(t, 1) for t in clean] + [(t, 0) for t in salad]
    return sets


def main(out_dir: Path = ASSETS, seed: int = 0) -> dict:
    results = {}
    for name, rows in labelled_sets(seed).items():
        results[name] = train_classifier(rows, Path(out_dir) / f"{name}.npz", seed=seed)
        print(f"{name}: accuracy {results[name]['accuracy']:.3f} on {results[name]['n_test']} held-out documents, "
              f"{results[name]['bytes'] / 1024:.0f} KB")
    return results


if __name__ == "__main__":
    main()
