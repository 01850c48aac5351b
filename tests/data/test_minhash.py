"""MinHash maths against its formulas (WanJuan-CC, arXiv 2402.19282, stage 3; docs/papers.md §4)."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.data.dedup import minhash as mh
from lmforge.data.dedup.stage import candidate_pairs, same_value_pairs
from lmforge.data.dedup.unionfind import connected_components


def sets_with_jaccard(s: float, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of random 32-bit shingles with exact Jaccard s: |A & B| = s |A u B|."""
    union = rng.choice(1 << 32, size=size, replace=False).astype(np.uint64)
    inter = int(round(s * size))
    rest = size - inter
    a = np.concatenate([union[:inter], union[inter:inter + rest // 2]])
    b = np.concatenate([union[:inter], union[inter + rest // 2:]])
    return a, b


@pytest.mark.parametrize("family", mh.FAMILIES)
def test_estimate_matches_jaccard_within_binomial_error(family):
    rng = np.random.default_rng(0)
    a_, b_ = mh.permutations(128, seed=3, family=family)
    z = []
    for s in (0.2, 0.5, 0.7, 0.8, 0.9):
        for _ in range(60):
            a, b = sets_with_jaccard(s, 400, rng)
            est = mh.estimate_jaccard(mh.minhash_signature(a, a_, b_, family), mh.minhash_signature(b, a_, b_, family))
            z.append((est - s) / np.sqrt(s * (1 - s) / 128))
    z = np.array(z)
    # the estimator is unbiased with the binomial standard error sqrt(J(1-J)/128)
    assert abs(z.mean()) < 0.25, z.mean()
    assert 0.8 < z.std() < 1.2, z.std()
    assert np.mean(np.abs(z) < 3) > 0.98


def test_text_estimate_on_real_words():
    from lmforge import corpora

    words = corpora.english_text(400_000).split()
    a_, b_ = mh.permutations()
    rng = np.random.default_rng(1)
    errors = []
    for i in range(40):
        base = words[i * 500:i * 500 + 400]
        variant = list(base)
        for j in rng.choice(400, size=int(rng.integers(5, 40)), replace=False):
            variant[j] = f"zz{j}"
        A = {tuple(mh.normalize(" ".join(base)).split()[k:k + 5]) for k in range(396)}
        B = {tuple(mh.normalize(" ".join(variant)).split()[k:k + 5]) for k in range(396)}
        exact = len(A & B) / len(A | B)
        s1, _ = mh.text_signature(" ".join(base), a_, b_)
        s2, _ = mh.text_signature(" ".join(variant), a_, b_)
        errors.append(mh.estimate_jaccard(s1, s2) - exact)
    assert abs(np.mean(errors)) < 0.02 and np.std(errors) < 0.06


def test_lsh_candidate_probability_follows_the_s_curve():
    bands, rows = mh.optimal_bands(0.7, 128, 0.2, 0.8)
    a_, b_ = mh.permutations(128, seed=5)
    rng = np.random.default_rng(2)
    n = 300
    for s in (0.4, 0.6, 0.7, 0.8):
        hits = 0
        for _ in range(n):
            a, b = sets_with_jaccard(s, 200, rng)
            sig = np.stack([mh.minhash_signature(a, a_, b_), mh.minhash_signature(b, a_, b_)])
            keys = mh.band_keys(sig, bands, rows)
            hits += bool((keys[0] == keys[1]).any())
        p = mh.candidate_probability(s, bands, rows)
        assert abs(hits / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 0.01, (s, hits / n, p)


@pytest.mark.parametrize("threshold,num_perm", [(0.7, 128), (0.5, 64), (0.8, 256)])
def test_optimal_bands_agrees_with_datasketch(threshold, num_perm):
    lsh = pytest.importorskip("datasketch.lsh")
    assert mh.optimal_bands(threshold, num_perm) == lsh._optimal_param(threshold, num_perm, 0.5, 0.5)


def test_s_curve_formula_and_threshold_choice():
    b, r = mh.optimal_bands(0.7, 128)
    assert b * r <= 128 and (b, r) == (14, 9)
    assert mh.candidate_probability(0.0, b, r) == 0.0 and mh.candidate_probability(1.0, b, r) == 1.0
    # the curve's steepest point sits near the threshold
    s = np.linspace(0.01, 0.99, 99)
    assert abs(s[np.argmax(np.gradient(mh.candidate_probability(s, b, r)))] - 0.7) < 0.08


def test_word_hashes_are_the_polynomial_hash_of_each_word():
    text = mh.normalize("To be, or NOT to be: that is the question!")
    assert text == "to be or not to be that is the question"
    ref = []
    for w in text.split():
        h = 0
        for c in w:
            h = (h * mh.BASE + ord(c)) % (1 << 64)
        ref.append(h)
    assert (mh.unit_hashes(text) == mh.mix64(np.array(ref, dtype=np.uint64))).all()


def test_chinese_units_are_characters():
    text = mh.normalize("中华人民共和国成立了。")
    units = mh.unit_hashes(text)
    assert units.size == len("中华人民共和国成立了")
    assert mh.shingle_hashes(units, 5).size == units.size - 4


def test_mulmod61_is_exact():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1 << 32, 1000, dtype=np.uint64)
    a = rng.integers(1, (1 << 61) - 1, 1000, dtype=np.uint64)
    got = mh.mulmod61(x, a)
    assert all(int(g) == (int(xx) * int(aa)) % ((1 << 61) - 1) for g, xx, aa in zip(got, x, a))


def test_union_find_matches_a_reference():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 80))
        edges = rng.integers(0, n, size=(int(rng.integers(0, 100)), 2))
        parent = list(range(n))

        def find(x):
            while parent[x] != x:
                x = parent[x]
            return x
        for u, v in edges:
            ru, rv = find(u), find(v)
            parent[max(ru, rv)] = min(ru, rv)
        ref = [min(i for i in range(n) if find(i) == find(j)) for j in range(n)]
        assert connected_components(n, edges).tolist() == ref


def test_bucket_pairs():
    keys = np.array([5, 7, 5, 9, 7, 5], dtype=np.uint64)
    assert sorted(map(tuple, candidate_pairs(keys).tolist())) == [(0, 2), (0, 5), (1, 4), (2, 5)]
    assert sorted(map(tuple, same_value_pairs(keys).tolist())) == [(0, 2), (0, 5), (1, 4)]


@pytest.mark.parametrize("family", mh.FAMILIES)
def test_batched_signatures_equal_the_per_document_formula(family, monkeypatch):
    monkeypatch.setattr(mh, "BLOCK", 50)  # small blocks: documents fall on both sides of block edges
    rng = np.random.default_rng(4)
    docs = [rng.integers(0, 1 << 32, int(n), dtype=np.uint64) for n in rng.integers(0, 120, 40)]
    docs[3] = docs[17] = np.zeros(0, np.uint64)
    docs.append(rng.integers(0, 1 << 32, 400, dtype=np.uint64))  # longer than a block
    a, b = mh.permutations(64, seed=2, family=family)
    ref = np.stack([mh.minhash_signature(d, a, b, family) for d in docs])
    assert (mh.minhash_signatures(docs, a, b, family) == ref).all()
    assert mh.minhash_signatures([], a, b, family).shape == (0, 64)


def test_normalize_is_nfkc_lower_and_one_space_per_separator_run():
    import unicodedata

    texts = ["Hello, World!", "  \t a\u3000b\u00a0 ", "ＡＢＣ，１２３。", "İstanbul ß ﬁ", "x\U0001F600y",
             "a\x1cb\x85c\u2028d", "\u200bzero\u200bwidth", "\U00030001 \U000E0001 end .", "...", ""]
    # random mixes of ideographs with what NFKC composes, decomposes or reorders next to them
    tricky = "中文字e\u0301\u0327\u0300ａ，。１ﬁ\u1100\u1161\u11a8가\uf900\u2f00\u3000 .Åa\u030a"
    rng = np.random.default_rng(0)
    texts += ["".join(rng.choice(list(tricky), size=int(rng.integers(1, 30)))) for _ in range(300)]
    for text in texts:
        cats = [(c, unicodedata.category(c)) for c in unicodedata.normalize("NFKC", text).lower()]
        folded = "".join(" " if (cat[0] in "PSZ" or cat in ("Cc", "Cf")) and ord(c) < 0x30000 else c
                         for c, cat in cats)
        assert mh.normalize(text) == " ".join(folded.split()), text
    shingles, exact = mh.text_shingles("To be, or NOT to be!")
    assert exact == int(mh.mix64(np.array([mh.hash_string("to be or not to be")], np.uint64))[0])
    assert (shingles == mh.shingle_hashes(mh.unit_hashes("to be or not to be"))).all()


def test_bucket_pairs_star_for_big_buckets(monkeypatch):
    import lmforge.data.dedup.stage as stage

    monkeypatch.setattr(stage, "MAX_ALL_PAIRS", 3)
    keys = np.array([4, 1, 4, 1, 4, 4, 2, 1], dtype=np.uint64)
    assert sorted(map(tuple, candidate_pairs(keys).tolist())) == [(0, 2), (0, 4), (0, 5), (1, 3), (1, 7), (3, 7)]


def test_texts_shingles_equal_one_text_at_a_time():
    from lmforge import corpora

    words = corpora.english_text(20_000).split()
    texts = [" ".join(words[i * 37:i * 37 + int(n)]) for i, n in enumerate(range(0, 120, 7))]
    texts += ["", "中华人民共和国成立了。", "中文", "Hello, 世界!", "a b", "...", corpora.chinese_news_text(800)]
    for ngram in (5, 3):
        shingles, exact = mh.texts_shingles(texts, ngram)
        assert len(shingles) == len(texts) and exact.dtype == np.uint64
        for text, x, h in zip(texts, shingles, exact):
            ref, ref_exact = mh.text_shingles(text, ngram)
            assert x.shape == ref.shape and (x == ref).all() and int(h) == ref_exact, text[:40]
    assert mh.texts_shingles([])[0] == []
