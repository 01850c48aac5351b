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
* `optimal_bands`: bands b and rows r (b r <= 128) minimising the false-positive plus
  false-negative area under the S-curve P(candidate | s) = 1 - (1 - s^r)^b around the threshold.
* `band_keys`: one 64-bit key per band; documents sharing a key in any band are candidates.
"""

from __future__ import annotations

import unicodedata

import numpy as np

MERSENNE = np.uint64((1 << 61) - 1)
BASE = 0x100000001B3  # FNV-64 prime: odd, so invertible mod 2^64
BASE_INV = pow(BASE, -1, 1 << 64)
M64 = (1 << 64) - 1
CHUNK = 4096  # shingles per block when a document is long (bounds memory at CHUNK x 128 x 8 bytes)


def _punctuation_table() -> dict[int, str]:
    table = {}
    for cp in range(0x30000):  # BMP + the two ideograph planes; rarer planes stay as they are
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cat = unicodedata.category(chr(cp))
        if cat[0] in "PS" or cat in ("Cc", "Cf") or (cat[0] == "Z"):
            table[cp] = " "
    return table


_TABLE: dict[int, str] | None = None


def normalize(text: str) -> str:
    """NFKC, lower case, punctuation/symbols/controls/spaces -> one space (the same key for
    "Hello, World!" and "hello world")."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _punctuation_table()
    return " ".join(unicodedata.normalize("NFKC", text).lower().translate(_TABLE).split())


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


def _powers(n: int, base: int) -> np.ndarray:
    p = np.full(n + 1, base, dtype=np.uint64)
    p[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(p, dtype=np.uint64)


def is_cjk_text(codepoints: np.ndarray) -> bool:
    """Chinese-like when at least 30% of the non-space characters are CJK ideographs."""
    non_space = codepoints[codepoints != 32]
    if not non_space.size:
        return False
    cjk = ((non_space >= 0x3400) & (non_space <= 0x9FFF)) | ((non_space >= 0xF900) & (non_space <= 0xFAFF))
    return cjk.mean() >= 0.3


def unit_hashes(normalized: str) -> np.ndarray:
    """uint64 hash per unit of a `normalize`d text: per character if Chinese-like, else per word."""
    cp = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if not cp.size:
        return cp
    if is_cjk_text(cp):
        return mix64(cp[cp != 32])
    n = cp.size
    with np.errstate(over="ignore"):
        inv_pows = _powers(n, BASE_INV)[1:]                       # B^-(i+1)
        q = np.concatenate([[np.uint64(0)], np.cumsum(cp * inv_pows, dtype=np.uint64)])
        pows = _powers(n, BASE)
        prefix = pows * q                                         # P[k] = sum_{i<k} c_i B^(k-1-i)
        spaces = np.flatnonzero(cp == 32)
        starts = np.concatenate([[0], spaces + 1])
        ends = np.concatenate([spaces, [n]])
        words = prefix[ends] - prefix[starts] * pows[ends - starts]
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


def minhash_signature(shingles: np.ndarray, a: np.ndarray, b: np.ndarray,
                      family: str = "multiply-shift") -> np.ndarray:
    """min over shingles x of h_i(x) for each hash function i (an empty document gets all-max)."""
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


def text_signature(text: str, a: np.ndarray, b: np.ndarray, ngram: int = 5,
                   family: str = "multiply-shift") -> tuple[np.ndarray, int]:
    """(signature, exact-dedup hash of the normalised text)."""
    norm = normalize(text)
    units = unit_hashes(norm)
    exact = int(mix64(np.asarray([hash_string(norm)], dtype=np.uint64))[0])
    return minhash_signature(shingle_hashes(units, ngram), a, b, family), exact


def hash_string(text: str) -> int:
    """A stable 64-bit polynomial hash of a string (Python's hash() changes between processes)."""
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        pows = _powers(cp.size, BASE)[:-1][::-1]
        return int(np.sum(cp * pows, dtype=np.uint64)) if cp.size else 0


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
