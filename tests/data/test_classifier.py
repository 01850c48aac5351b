"""Trainable classifiers behind one scorer interface; the shipped defaults reach the figures of their cards."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lmforge import corpora
from lmforge.data import synthetic
from lmforge.data.classifier import ASSETS, features, load_scorer, read_labelled, train_classifier, train_linear
from lmforge.data.classifier_cards import NAMES, THRESHOLDS, card_figures, figures
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


@pytest.mark.parametrize("name", NAMES)
def test_shipped_defaults_reach_their_cards(name):
    """Each shipped model reaches the precision/recall its card states (less 0.02) on its labelled
    set, which synthetic.py did not write; the card names what it was trained on and its size."""
    stated = card_figures(name)
    assert {(r["threshold"], r["lang"]) for r in stated} == {(t, lang) for t in THRESHOLDS[name] for lang in ("all", "en", "zh")}
    measured = {(r["threshold"], r["lang"]): r for r in figures(name)}
    for row in stated:
        got = measured[(row["threshold"], row["lang"])]
        assert (got["n"], got["positives"]) == (row["n"], row["positives"]), (name, row)
        for key in ("precision", "recall"):
            assert got[key] >= row[key] - 0.02, (name, row, got)
    text = (ASSETS / f"{name}.md").read_text()
    assert "Trained on" in text and "KB" in text and f"classifier_cards {name}" in text
    assert (ASSETS / f"{name}.npz").stat().st_size < 400_000


def test_train_linear_soft_labels_and_prior():
    """Soft labels (a teacher's probabilities) train like hard ones, and a prior's weight on a
    feature that no row shows is kept: how the toxicity default keeps its teacher's vocabulary."""
    rows = [("the cat sat on the mat", 0.1), ("a lovely day in the park", 0.2),
            ("you fool, you utter fool", 0.9), ("what a fool you are", 0.8)] * 5
    w, b = train_linear(rows, buckets=1 << 10, steps=200)
    scorer_logit = lambda text: float(w.astype("float32")[features(text, 1 << 10)[0]] @ features(text, 1 << 10)[1] + b)
    assert scorer_logit("fool") > 0 > scorer_logit("the park")
    prior = np.zeros(1 << 10)
    prior[features("scoundrel", 1 << 10)[0]] = 8.0
    w, b = train_linear(rows, buckets=1 << 10, steps=200, l2=1e-2, prior=(prior, 0.0))
    assert float(w[features("scoundrel", 1 << 10)[0]][0]) == pytest.approx(8.0, abs=0.05)


def test_assets_folder_stays_small():
    assert sum(p.stat().st_size for p in ASSETS.iterdir() if p.is_file()) < 2_000_000
