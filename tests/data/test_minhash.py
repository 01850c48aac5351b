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
