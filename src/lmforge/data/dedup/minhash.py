"""MinHash signatures and LSH banding, vectorised with numpy.

Paper: WanJuan-CC, arXiv 2402.19282, stage 3; docs/papers.md §4.

InternLM2 / WanJuan-CC deduplicate with MinHash LSH over 5-grams, 128 hash functions and a
Jaccard threshold of 0.7. The pieces, each a small pure function that tests check against its
formula:

* `unit_hashes`: 64-bit hashes of the shingle units of a normalised text: words, or characters
  for Chinese (no spaces). Words are hashed all at once with a polynomial prefix hash mod 2^64
  (P[k] = B^k * cumsum(c_i * B^-(i+1)), B odd so invertible), no Python loop per word.
* `shingle_hashes`: 32-bit hashes of the n-grams of units (n = 5).
* `minhash_signature`: min over shingles of h_i(x), i = 1..128. By default h_i(x) = (a_i x + b_i)
  mod 2^64 (multiply-add-shift: strongly universal for 32-bit x, one multiply and one add per value,
  25x faster than the alternative); `family="mod-prime"` gives the textbook (a_i x + b_i) mod
  (2^61 - 1), computed exactly (datasketch and datatrove let a_i x overflow 64 bits) by splitting
  a_i in 32-bit halves. Tests check that both estimate Jaccard without bias, with the binomial
  standard error sqrt(J (1 - J) / 128).
* Bulk versions with the same values, what the dedup stage and bench/data_bench.py run:
  `texts_shingles` hashes many texts in numpy passes over all their code points joined by spaces,
  `minhash_signatures` computes h_i for one block of all documents' shingles at a time (a 1-D
  multiply-add per hash function, then `np.minimum.reduceat` at the document starts), so the cost
  is ~1 ns per (shingle, hash function) and not a dozen numpy calls per document.
* `optimal_bands`: bands b and rows r (b r <= 128) minimising the false-positive plus
  false-negative area under the S-curve P(candidate | s) = 1 - (1 - s^r)^b around the threshold.
* `band_keys`: one 64-bit key per band; documents sharing a key in any band are candidates.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

MERSENNE = np.uint64((1 << 61) - 1)
BASE = 0x100000001B3  # FNV-64 prime: odd, so invertible mod 2^64
BASE_INV = pow(BASE, -1, 1 << 64)
M64 = (1 << 64) - 1
CHUNK = 4096  # shingles per block when a document is long (bounds memory at CHUNK x 128 x 8 bytes)
BLOCK = 32768  # shingles per block of `minhash_signatures`: 256 KiB per pass, in L2
TEXT_BLOCK = 1 << 16  # characters per block of `texts_shingles`: ~60 bytes each in its arrays, ~4 MiB


def _separator_mask() -> np.ndarray:
    """True at the code points that `normalize` turns into a space: punctuation, symbols,
    controls, format characters and spaces in the BMP and the two ideograph planes (rarer planes
    stay as they are)."""
    mask = np.zeros(0x110000, dtype=bool)
    for cp in range(0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cat = unicodedata.category(chr(cp))
        mask[cp] = cat[0] in "PSZ" or cat in ("Cc", "Cf")
    return mask


_SEPARATOR: np.ndarray | None = None
# CJK unified ideographs have no decomposition, combining class 0 and compose with nothing on
# either side, so NFKC(u + ideograph + v) = NFKC(u) + ideograph + NFKC(v): only the runs between
# ideographs need normalising, and ASCII runs not even those (2.5x faster on Chinese text).
_NOT_IDEOGRAPH = re.compile("[^\u4e00-\u9fff]+")


def _nfkc_run(match: re.Match) -> str:
    run = match.group()
    return run if run.isascii() else unicodedata.normalize("NFKC", run)


def normalized_codepoints(text: str) -> np.ndarray:
    """The uint32 code points of `normalize(text)`, without building the string.

    One numpy pass instead of `str.translate` with a dict and `split`/`join`: separators become
    spaces, a space is kept only right after a non-space, a trailing one is dropped.
    """
    global _SEPARATOR
    if _SEPARATOR is None:
        _SEPARATOR = _separator_mask()
    if not text.isascii():  # NFKC leaves ASCII as it is
        text = _NOT_IDEOGRAPH.sub(_nfkc_run, text)
    cp = np.frombuffer(text.lower().encode("utf-32-le"), dtype=np.uint32).copy()
    sep = _SEPARATOR[cp]
    cp[sep] = 32
    keep = ~sep
    keep[1:] |= keep[:-1].copy()
    cp = cp[keep]
    return cp[:-1] if cp.size and cp[-1] == 32 else cp


def normalize(text: str) -> str:
    """NFKC, lower case, punctuation/symbols/controls/spaces -> one space (the same key for
    "Hello, World!" and "hello world")."""
    return normalized_codepoints(text).tobytes().decode("utf-32-le")


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the 64 output bits."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


_POWERS: dict[int, np.ndarray] = {}


def _powers(n: int, base: int) -> np.ndarray:
    """base^0 .. base^n mod 2^64, from a table kept per base and doubled when too short."""
    table = _POWERS.get(base)
    if table is None or table.size <= n:
        size = max(2 * n + 1, 1 << 16)
        p = np.full(size, base, dtype=np.uint64)
        p[0] = 1
        with np.errstate(over="ignore"):
            table = _POWERS[base] = np.cumprod(p, dtype=np.uint64)
    return table[:n + 1]


def is_cjk_text(codepoints: np.ndarray) -> bool:
    """Chinese-like when at least 30% of the non-space characters are CJK ideographs."""
    cp = codepoints.astype(np.uint32, copy=False)
    non_space = cp.size - np.count_nonzero(cp == 32)
    if not non_space:
        return False
    # one unsigned compare per range: c - lo wraps to a huge value when c < lo
    cjk = (np.count_nonzero(cp - np.uint32(0x3400) <= np.uint32(0x9FFF - 0x3400))
           + np.count_nonzero(cp - np.uint32(0xF900) <= np.uint32(0xFAFF - 0xF900)))
    return cjk / non_space >= 0.3


def unit_hashes(normalized: str) -> np.ndarray:
    """uint64 hash per unit of a `normalize`d text: per character if Chinese-like, else per word."""
    return codepoint_unit_hashes(np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32))


def codepoint_unit_hashes(codepoints: np.ndarray) -> np.ndarray:
    """`unit_hashes` of the code points of a normalised text (`normalized_codepoints`)."""
    if is_cjk_text(codepoints):
        cp = codepoints.astype(np.uint64)
        return mix64(cp[cp != 32])
    cp = codepoints.astype(np.uint64)
    if not cp.size:
        return cp
    n = cp.size
    with np.errstate(over="ignore"):
        inv_pows = _powers(n, BASE_INV)[1:]                       # B^-(i+1)
        q = np.empty(n + 1, dtype=np.uint64)
        q[0] = 0
        np.cumsum(cp * inv_pows, dtype=np.uint64, out=q[1:])
        pows = _powers(n, BASE)
        spaces = np.flatnonzero(cp == 32)
        starts = np.concatenate([[0], spaces + 1])
        ends = np.append(spaces, n)
        # P[k] = B^k q[k] = sum_{i<k} c_i B^(k-1-i), only at the word ends and starts
        words = pows[ends] * q[ends] - pows[starts] * q[starts] * pows[ends - starts]
    return mix64(words)


def shingle_hashes(units: np.ndarray, n: int = 5) -> np.ndarray:
    """uint32-valued (stored as uint64) hashes of the n-grams of units; one shingle if fewer units."""
    if units.size == 0:
        return units
    if units.size < n:
        n = units.size
    k = units.size - n + 1
    acc = np.zeros(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):  # position-dependent multipliers keep "a b" and "b a" apart
            acc = acc * np.uint64(BASE) + units[j:j + k]
    return mix64(acc) >> np.uint64(32)


FAMILIES = ("multiply-shift", "mod-prime")


def permutations(num_perm: int = 128, seed: int = 1, family: str = "multiply-shift") -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of `num_perm` hash functions of the chosen family.

    multiply-shift: h(x) = (a x + b) mod 2^64 with a odd, b random 64-bit (Dietzfelbinger's
    multiply-add-shift, strongly universal for 32-bit x; the minimum is taken on all 64 bits, the
    same order as on the top 32). mod-prime: h(x) = (a x + b) mod (2^61 - 1), a in [1, p), b in [0, p).
    """
    if family not in FAMILIES:
        raise ValueError(f"hash family {family!r}: choose one of {FAMILIES}")
    rng = np.random.default_rng(seed)
    if family == "mod-prime":
        return (rng.integers(1, int(MERSENNE), size=num_perm, dtype=np.uint64),
                rng.integers(0, int(MERSENNE), size=num_perm, dtype=np.uint64))
    a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return a, rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2)


def _mod61(v: np.ndarray) -> np.ndarray:
    """v mod (2^61 - 1) for any uint64 v, without division: 2^61 = 1 (mod p)."""
    v = (v & MERSENNE) + (v >> np.uint64(61))
    return np.minimum(v, v - MERSENNE)  # subtract p once where v >= p (v - p wraps to huge when v < p)


def mulmod61(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(x * a) mod (2^61 - 1) exactly, for x < 2^32 and a < 2^61, in uint64 without overflow.

    a = a_hi 2^32 + a_lo, so x a = (x a_hi) 2^32 + x a_lo with x a_lo < 2^64 and x a_hi < 2^61;
    (x a_hi) 2^32 = t_hi 2^61 + t_lo 2^32 = t_hi + t_lo 2^32 (mod p) with t = t_hi 2^29 + t_lo.
    """
    lo = x * (a & np.uint64(0xFFFFFFFF))
    t = x * (a >> np.uint64(32))
    hi = (t >> np.uint64(29)) + ((t & np.uint64((1 << 29) - 1)) << np.uint64(32))
    return _mod61(_mod61(lo) + _mod61(hi))


def minhash_signatures(shingle_sets: list[np.ndarray], a: np.ndarray, b: np.ndarray,
                        family: str = "multiply-shift") -> np.ndarray:
    """(n_docs, num_perm) signatures: min over each document's shingles x of h_i(x).

    All documents' shingles go into one array, cut at document boundaries into blocks of about
    BLOCK values; per block and hash function one multiply-add over the contiguous block and one
    `np.minimum.reduceat` at the document starts. This layout is ~4x faster than the (shingles x
    num_perm) matrix of a document: the 1-D passes stay in cache, run in wide SIMD lanes, and the
    Python overhead is per block, not per document. Empty documents get all-max.
    """
    sig = np.full((len(shingle_sets), a.size), M64, dtype=np.uint64)
    sizes = np.fromiter((s.size for s in shingle_sets), dtype=np.int64, count=len(shingle_sets))
    docs = np.flatnonzero(sizes)
    if not docs.size:
        return sig
    first = (np.cumsum(sizes[docs]) - sizes[docs]) // BLOCK  # block of each document's first shingle
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(first)) + 1, [docs.size]])
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        block = docs[lo:hi]
        x = np.concatenate([shingle_sets[d] for d in block]).astype(np.uint64, copy=False)
        offsets = np.concatenate([[0], np.cumsum(sizes[block])[:-1]])
        sig[block] = _block_minima(x, offsets, a, b, family).T
    return sig


def _block_minima(x: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray, family: str) -> np.ndarray:
    """(num_perm, n_docs) minima of h_i over the segments of x that start at `offsets`."""
    out = np.empty((a.size, offsets.size), dtype=np.uint64)
    v = np.empty_like(x)
    with np.errstate(over="ignore"):
        if family == "mod-prime":
            for i in range(a.size):
                v = _mod61(mulmod61(x, a[i]) + b[i])
                np.minimum.reduceat(v, offsets, out=out[i])
        else:
            for i in range(a.size):
                np.multiply(x, a[i], out=v)
                np.add(v, b[i], out=v)
                np.minimum.reduceat(v, offsets, out=out[i])
    return out


def minhash_signature(shingles: np.ndarray, a: np.ndarray, b: np.ndarray,
                      family: str = "multiply-shift") -> np.ndarray:
    """min over shingles x of h_i(x) for each hash function i (an empty document gets all-max).

    One document as a (shingles x num_perm) matrix, the formula as written; `minhash_signatures`
    gives the same values for many documents at once, faster.
    """
    sig = np.full(a.size, M64, dtype=np.uint64)
    for start in range(0, shingles.size, CHUNK):
        x = shingles[start:start + CHUNK, None]
        if family == "mod-prime":
            v = _mod61(mulmod61(x, a[None, :]) + b[None, :])
        else:
            with np.errstate(over="ignore"):
                v = x * a[None, :] + b[None, :]
        np.minimum(sig, v.min(axis=0), out=sig)
    return sig


def text_shingles(text: str, ngram: int = 5) -> tuple[np.ndarray, int]:
    """(32-bit shingle hashes, exact-dedup hash of the normalised text) of a raw text."""
    cp = normalized_codepoints(text)
    exact = int(mix64(np.asarray([codepoint_hash(cp)], dtype=np.uint64))[0])
    return shingle_hashes(codepoint_unit_hashes(cp), ngram), exact


def texts_shingles(texts: list[str], ngram: int = 5) -> tuple[list[np.ndarray], np.ndarray]:
    """`text_shingles` of many texts at once: (shingle hashes per text, uint64 exact hashes).

    The same values, with numpy passes over all the texts' code points together (joined by
    spaces, so no word or shingle crosses two texts) instead of a dozen small calls per text.
    """
    shingles, exact, start, chars = [], [], 0, 0
    for i, text in enumerate(texts):  # blocks of ~TEXT_BLOCK characters keep the arrays in cache
        chars += len(text)
        if chars >= TEXT_BLOCK or i == len(texts) - 1:
            x, h = _block_shingles(texts[start:i + 1], ngram)
            shingles += x
            exact.append(h)
            start, chars = i + 1, 0
    return shingles, np.concatenate(exact) if exact else np.zeros(0, dtype=np.uint64)


def _block_shingles(texts: list[str], ngram: int) -> tuple[list[np.ndarray], np.ndarray]:
    cps = [normalized_codepoints(t) for t in texts]
    sizes = np.fromiter((c.size for c in cps), dtype=np.int64, count=len(cps))
    starts = np.cumsum(sizes + 1) - sizes - 1                    # first code point of each text
    cp = np.full(int(sizes.sum()) + len(cps), 32, dtype=np.uint64)
    for c, start in zip(cps, starts):
        cp[start:start + c.size] = c
    n = cp.size
    doc = np.repeat(np.arange(len(cps)), sizes + 1)              # text of each code point
    with np.errstate(over="ignore"):
        q = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(cp * _powers(n, BASE_INV)[1:], dtype=np.uint64, out=q[1:])
        pows = _powers(n, BASE)

        def span_hash(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:  # sum_{lo<=i<hi} c_i B^(hi-1-i)
            return pows[hi] * q[hi] - pows[lo] * q[lo] * pows[hi - lo]

        exact = mix64(span_hash(starts, starts + sizes))
        is_space = cp == 32
        cjk = (cp - np.uint64(0x3400) <= np.uint64(0x9FFF - 0x3400)) | (cp - np.uint64(0xF900) <= np.uint64(0xFAFF - 0xF900))
        non_space = np.bincount(doc, weights=~is_space, minlength=len(cps))
        cjk_doc = np.bincount(doc, weights=cjk, minlength=len(cps)) / np.maximum(non_space, 1) >= 0.3
        # one unit per word of a word text (at its first code point), per character of a Chinese one
        spaces = np.flatnonzero(is_space)
        word_lo = np.concatenate([[0], spaces[:-1] + 1])
        word_lo, word_hi = word_lo[word_lo < spaces], spaces[word_lo < spaces]
        unit = np.zeros(n, dtype=np.uint64)
        unit[word_lo] = span_hash(word_lo, word_hi)
        is_unit = np.zeros(n, dtype=bool)
        is_unit[word_lo] = True
        char_text = cjk_doc[doc]
        is_unit[char_text] = ~is_space[char_text]
        unit[char_text] = cp[char_text]
        units, unit_doc = unit[is_unit], doc[is_unit]
        units = mix64(units)
    counts = np.bincount(unit_doc, minlength=len(cps))
    k = max(units.size - ngram + 1, 0)
    acc = np.zeros(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(ngram):
            acc = acc * np.uint64(BASE) + units[j:j + k]
    shingles = mix64(acc) >> np.uint64(32)
    # a shingle is a text's when it starts in the text and its last unit is still there
    whole = unit_doc[:k] == unit_doc[ngram - 1:ngram - 1 + k] if k else np.zeros(0, bool)
    per_text = np.split(shingles[whole], np.cumsum(np.maximum(counts - ngram + 1, 0))[:-1])
    unit_starts = np.cumsum(counts) - counts
    for d in np.flatnonzero((counts > 0) & (counts < ngram)):  # short texts: one shingle of all units
        per_text[d] = shingle_hashes(units[unit_starts[d]:unit_starts[d] + counts[d]], ngram)
    return per_text, exact


def text_signature(text: str, a: np.ndarray, b: np.ndarray, ngram: int = 5,
                   family: str = "multiply-shift") -> tuple[np.ndarray, int]:
    """(signature, exact-dedup hash of the normalised text)."""
    shingles, exact = text_shingles(text, ngram)
    return minhash_signature(shingles, a, b, family), exact


def hash_string(text: str) -> int:
    """A stable 64-bit polynomial hash of a string (Python's hash() changes between processes)."""
    return codepoint_hash(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))


def codepoint_hash(codepoints: np.ndarray) -> int:
    """`hash_string` of the string with these code points: sum_i c_i B^(n-1-i) mod 2^64."""
    if not codepoints.size:
        return 0
    with np.errstate(over="ignore"):
        pows = _powers(codepoints.size, BASE)[:-1][::-1]
        return int(np.sum(codepoints.astype(np.uint64) * pows, dtype=np.uint64))


def estimate_jaccard(sig1: np.ndarray, sig2: np.ndarray) -> float:
    return float(np.mean(sig1 == sig2))


# ---- LSH ------------------------------------------------------------------------------------


def candidate_probability(s: np.ndarray | float, bands: int, rows: int) -> np.ndarray | float:
    """The S-curve: P(two documents with Jaccard s share at least one band) = 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - np.power(s, rows)) ** bands


def _area(f, lo: float, hi: float, steps: int = 400) -> float:
    x = np.linspace(lo, hi, steps + 1)
    y = f(x)
    return float(np.sum((y[1:] + y[:-1]) * 0.5) * (hi - lo) / steps)


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising fp_weight * FP area + fn_weight * FN area of the S-curve."""
    best, best_cost = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _area(lambda s: candidate_probability(s, b, r), 0.0, threshold)
            fn = _area(lambda s: 1.0 - candidate_probability(s, b, r), threshold, 1.0)
            cost = fp_weight * fp + fn_weight * fn
            if cost < best_cost:
                best, best_cost = (b, r), cost
    return best


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs, bands) uint64 keys: each band's `rows` signature values folded into one hash."""
    n = signatures.shape[0]
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(rows):
            keys = keys * np.uint64(BASE) + signatures[:, j:bands * rows:rows]
        keys ^= np.arange(bands, dtype=np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15)  # bands differ
    return mix64(keys)
