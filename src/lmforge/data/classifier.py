"""Trainable text classifiers behind one scorer interface.

Paper: WanJuan-CC, arXiv 2402.19282, stages 4-5; docs/papers.md §4.

WanJuan-CC scores every document with a toxicity, a pornography, an advertisement and a fluency
classifier. Two model kinds sit behind one `Scorer` interface, trained on labelled JSONL
(`{"text": ..., "label": 1}`) by `lmforge data train-classifier` and loaded from a path:

* `linear` (default, `.npz`): logistic regression over hashed word unigrams + bigrams (characters
  for Chinese, which has no spaces), log counts, L2-normalised; 2^17 float16 weights = 256 KB.
  Pure numpy, deterministic. The shipped defaults (`lmforge.data.train_defaults`) are of this kind;
  each has a card beside it (`assets/<name>.md`, `lmforge.data.classifier_cards`).
* `fasttext` (`.ftz` / `.bin`): a supervised fastText model (`fasttext-numpy2-wheel`). Its trainer
  diverges ("Encountered NaN") on most seeds for our long documents, so it is the option, not the
  default; the trainer retries with other seeds.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.atomic import atomic_path
from lmforge.data.dedup.minhash import normalize, unit_hashes
from lmforge.data.text import CJK_RE
from lmforge.data.writers import open_atomic

ASSETS = Path(__file__).parent / "assets"
_SPACE_RE = re.compile(r"\s+")
_PUNCT_RE = re.compile(r"([^\w\s])")


def fasttext_tokens(text: str, max_chars: int = 20_000) -> str:
    """One line: lower case, punctuation and CJK characters split off as tokens."""
    text = text[:max_chars].lower()
    text = CJK_RE.sub(lambda m: f" {m.group(0)} ", text)
    text = _PUNCT_RE.sub(r" \1 ", text)
    return _SPACE_RE.sub(" ", text).strip()


class Scorer:
    """The one interface: probability in [0, 1] that each text has the positive label."""

    def score(self, texts: Sequence[str]) -> list[float]:
        raise NotImplementedError


@dataclass
class FastTextScorer(Scorer):
    path: str

    def __post_init__(self) -> None:
        import fasttext

        if not Path(self.path).is_file():
            raise FileNotFoundError(f"{self.path}: no classifier model; train one with "
                                    "`lmforge data train-classifier --input labelled.jsonl --out MODEL`")
        self.model = fasttext.load_model(str(self.path))

    def score(self, texts: Sequence[str]) -> list[float]:
        labels, probs = self.model.predict([fasttext_tokens(t) for t in texts], k=2)
        out = []
        for lab, p in zip(labels, probs):
            d = dict(zip(lab, p))
            out.append(float(min(1.0, max(0.0, d.get("__label__1", 1.0 - d.get("__label__0", 1.0))))))
        return out


@dataclass
class LinearScorer(Scorer):
    path: str

    def __post_init__(self) -> None:
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"{self.path}: no classifier model; train one with "
                                    "`lmforge data train-classifier --input labelled.jsonl --out MODEL.npz`")
        with np.load(self.path) as z:
            self.weights = z["weights"].astype(np.float32)
            self.bias = float(z["bias"])

    def score(self, texts: Sequence[str]) -> list[float]:
        out = []
        for text in texts:
            idx, val = features(text, self.weights.size)
            out.append(float(1.0 / (1.0 + np.exp(-(self.weights[idx] @ val + self.bias)))))
        return out


def load_scorer(path: str, default: str) -> Scorer:
    """A scorer from `path` (.npz linear, .ftz/.bin fastText), or the shipped default asset `default`."""
    path = path or str(ASSETS / default)
    return LinearScorer(path) if path.endswith(".npz") else FastTextScorer(path)


def gram_hashes(text: str, max_chars: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """(unigram, bigram) hashes of a text's units: words, or characters for Chinese-like text."""
    units = unit_hashes(normalize(text[:max_chars]))
    with np.errstate(over="ignore"):
        return units, units[:-1] * np.uint64(0x9E3779B97F4A7C15) + units[1:]


def features(text: str, buckets: int, max_chars: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Hashed unigram + bigram features of a text: (bucket indices, L2-normalised log counts)."""
    unigrams, bigrams = gram_hashes(text, max_chars)
    if unigrams.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    idx, counts = np.unique(np.concatenate([unigrams, bigrams]) % np.uint64(buckets), return_counts=True)
    val = np.log1p(counts).astype(np.float32)
    return idx.astype(np.int64), val / np.linalg.norm(val)


def train_linear(rows: Sequence[tuple[str, float]], buckets: int = 1 << 17, steps: int = 800, lr: float = 0.1,
                 l2: float = 1e-6, prior: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression by full-batch Adam over sparse rows. A label is 0 or 1, or
    a probability in [0, 1] (a teacher's soft label: cross-entropy against it; the classes for the
    balance are split at 0.5). `prior` (weights, bias): start there and pull the weights towards it
    (L2 to the prior instead of to zero), so that what the prior knows about features the rows
    rarely show is kept."""
    feats = [features(t, buckets) for t, _ in rows]
    y = np.array([label for _, label in rows], np.float32)
    row = np.concatenate([np.full(len(i), r) for r, (i, _) in enumerate(feats)])
    idx = np.concatenate([i for i, _ in feats])
    val = np.concatenate([v for _, v in feats])
    pos = (y >= 0.5).mean()
    if not 0 < pos < 1:
        raise ValueError("train_linear needs examples of both classes (labels below and at or above 0.5)")
    weight = np.where(y >= 0.5, 0.5 / pos, 0.5 / (1 - pos)) / len(y)
    w0, b = (np.zeros(buckets), 0.0) if prior is None else (np.asarray(prior[0], np.float64), float(prior[1]))
    w = w0.copy()
    m, v, mb, vb = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    for t in range(1, steps + 1):
        logits = np.bincount(row, weights=w[idx] * val, minlength=len(y)) + b
        err = (1.0 / (1.0 + np.exp(-logits)) - y) * weight
        g = np.bincount(idx, weights=err[row] * val, minlength=buckets) + l2 * (w - w0)
        gb = err.sum()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
        w -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        b -= lr * (mb / (1 - 0.9 ** t)) / (np.sqrt(vb / (1 - 0.999 ** t)) + 1e-8)
    return w.astype(np.float16), b


def save_linear(path: str | Path, weights: np.ndarray, bias: float) -> None:
    """Write a linear model as `.npz` (float16 weights, float64 bias), atomically."""
    with open_atomic(Path(path)) as f:
        np.savez_compressed(f, weights=weights.astype(np.float16), bias=np.float64(bias))


def read_labelled(path: str | Path) -> list[tuple[str, int]]:
    """Rows {"text": str, "label": 0/1 (or true/false, or "1"/"0")}; errors name the line."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 JSON lines ({e.reason} at byte {e.start})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            label = int(row["label"]) if not isinstance(row["label"], bool) else int(row["label"])
            text = row["text"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{i}: expected {{\"text\": str, \"label\": 0 or 1}} ({e})") from None
        if label not in (0, 1) or not isinstance(text, str):
            raise ValueError(f"{path}:{i}: label must be 0 or 1 and text a string")
        rows.append((text, label))
    if len({label for _, label in rows}) < 2:
        raise ValueError(f"{path}: needs examples of both labels 0 and 1")
    return rows


def train_classifier(rows: Sequence[tuple[str, int]], out: str | Path, backend: str = "linear", seed: int = 0,
                     **options) -> dict:
    """Train on (text, label) rows, hold out a tenth; writes `out` atomically and returns
    {"accuracy", "n_train", "n_test", "bytes"}. `options` go to `train_linear` or `train_fasttext`."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    n_test = max(1, len(rows) // 10)
    test, train = rows[:n_test], rows[n_test:]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if backend == "linear":
        if out.suffix != ".npz":
            raise ValueError(f"{out}: a linear classifier is saved as .npz")
        save_linear(out, *train_linear(train, **options))
    elif backend == "fasttext":
        train_fasttext(train, out, seed=seed, **options)
    else:
        raise ValueError(f"backend {backend!r}: choose 'linear' or 'fasttext'")
    scorer = load_scorer(str(out), "")
    predicted = scorer.score([t for t, _ in test])
    accuracy = sum((p >= 0.5) == bool(y) for p, (_, y) in zip(predicted, test)) / len(test)
    return {"accuracy": accuracy, "n_train": len(train), "n_test": len(test), "bytes": out.stat().st_size}


def train_fasttext(train: Sequence[tuple[str, int]], out: Path, epochs: int = 10, dim: int = 16, word_ngrams: int = 2,
                   lr: float = 0.1, buckets: int = 50_000, min_count: int = 2, quantize: bool = True,
                   seed: int = 0) -> None:
    """Train in a fresh (spawned) process: in a process whose heap earlier work has dirtied,
    fastText's trainer was seen to hit NaN on every seed, while a clean process trains the same
    data at once."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"__label__{y} {fasttext_tokens(t)}\n" for t, y in train), encoding="utf-8")
        params = dict(epoch=epochs, dim=dim, wordNgrams=word_ngrams, lr=lr, bucket=buckets, minCount=min_count)
        with atomic_path(out) as tmp_model:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                pool.submit(_fasttext_child, str(train_file), tmp_model, params, quantize, seed).result()


def _fasttext_child(train_file: str, model_path: str, params: dict, quantize: bool, seed: int) -> None:
    import fasttext

    for attempt in range(16):  # fastText's trainer hits NaN on some seeds: try the next one
        try:
            model = fasttext.train_supervised(train_file, thread=1, seed=seed + attempt, verbose=0, **params)
            break
        except RuntimeError as e:
            if "NaN" not in str(e) or attempt == 15:
                raise
    if quantize:
        model.quantize(input=train_file, qnorm=True, retrain=False, cutoff=20_000)
    model.save_model(model_path)
