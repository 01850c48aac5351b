"""Trainable classifiers behind one scorer interface; the shipped defaults load and separate their classes."""

from __future__ import annotations

import json
import random

import pytest

from lmforge import corpora
from lmforge.data import synthetic
from lmforge.data.classifier import ASSETS, load_scorer, read_labelled, train_classifier
from lmforge.data.cli import train_classifier as cli_train


def labelled(n: int = 300) -> list[tuple[str, int]]:
    rng = random.Random(0)
    lines = [line for line in corpora.english_text(300_000).splitlines() if len(line) > 30]
    rows = []
    for i in range(n):
        real = lines[i * 7:i * 7 + 5]
        if i % 2:
            rows.append(("\n".join(synthetic.mix(real, synthetic.sentences("ad", "en", 3, rng, half=0), rng)), 0))
        else:
            rows.append(("\n".join(real), 1))
    return rows


def test_train_classifier_from_labelled_jsonl(tmp_path):
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in labelled()))
    result = cli_train(str(path), str(tmp_path / "not_ad.npz"))
    assert result["accuracy"] >= 0.9 and result["bytes"] < 400_000
    scorer = load_scorer(str(tmp_path / "not_ad.npz"), "")
    ad, clean = scorer.score(["Buy now! Limited time offer, 50% off, free shipping, call now.",
                              "The king went to the castle and spoke to his sons about the war."])
    assert 0 <= ad < 0.5 < clean <= 1


def test_fasttext_backend(tmp_path):
    pytest.importorskip("fasttext")
    # a smoke test of the optional backend: fastText's trainer is not deterministic across retries
    result = train_classifier(labelled(), tmp_path / "m.ftz", backend="fasttext", epochs=25, quantize=False)
    assert result["accuracy"] >= 0.65
    assert 0 <= load_scorer(str(tmp_path / "m.ftz"), "").score(["hello"])[0] <= 1


def test_labelled_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_labelled(bad)


@pytest.mark.parametrize("name,kind,high", [("toxic", "toxic", True), ("porn", "porn", True), ("not_ad", "ad", False)])
def test_shipped_defaults_separate_held_out_words(name, kind, high):
    """Trained on half 0 of each word list; scored here on half 1 (the demo crawl's half)."""
    rng = random.Random(1)
    lines = [line for line in corpora.english_text(200_000).splitlines() if len(line) > 30]
    clean = ["\n".join(lines[i * 10:i * 10 + 8]) for i in range(40)]
    planted = ["\n".join(synthetic.mix(c.split("\n"), synthetic.sentences(kind, "en", 6, rng, half=1), rng)) for c in clean]
    scorer = load_scorer("", f"{name}.npz")
    clean_scores, planted_scores = scorer.score(clean), scorer.score(planted)
    if not high:
        clean_scores, planted_scores = [1 - s for s in clean_scores], [1 - s for s in planted_scores]
    assert sum(clean_scores) / 40 < 0.2 and sum(planted_scores) / 40 > sum(clean_scores) / 40 + 0.3
    assert sum(p.stat().st_size for p in ASSETS.iterdir()) < 5_000_000
