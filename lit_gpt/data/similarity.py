"""Text similarity for filtering and de-duplicating instruction data: ROUGE-L and MinHash.

Which one to use when:
- `rouge_l(a, b)`: one pair, exact. Bit-parallel LCS, so even 1k-word texts take microseconds.
- `near_duplicates(texts_a, texts_b, threshold)`: all pairs with ROUGE-L F >= threshold, exact. A cheap upper bound
  on ROUGE-L, computed for all pairs at once with one sparse matrix product over word counts, discards almost every
  pair before any LCS is run; 10k x 1k short texts take a few seconds. Use it up to ~10^8 pairs (Self-Instruct's
  "ROUGE-L < 0.7 to every instruction in the pool" filter, near-duplicate removal of datasets up to ~20k rows).
- `minhash_signatures` + `lsh_candidate_pairs`: approximate, for large sets (100k+ rows against themselves) where
  even the bound's all-pairs product is too much. LSH banding finds pairs whose word-shingle Jaccard similarity is
  likely above a threshold in about linear time; verify its candidates with `rouge_l` when exact scores matter.
  `dedup_indices(texts, threshold, method="auto")` picks between the two by the number of pairs.

Tokenization (shared by all): lowercase, runs of letters/digits are words (`\\w+` without underscore), everything
else separates. ROUGE-L F-measure with beta = 1: F = 2 * LCS / (len(a) + len(b)).
"""

import re
import warnings
import zlib
from collections import Counter
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from lit_gpt.utils import UserError

WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
MATRIX_ELEMENTS = 1 << 25
EXACT_PAIR_LIMIT = 200_000_000  # dedup_indices(method="auto") switches to MinHash above this many pairs
_MERSENNE_PRIME = (1 << 31) - 1  # hashes and permutations stay below 2**31 so a*x+b fits in int64


def word_tokens(text: str) -> list[str]:
    return WORD_RE.findall(text.lower())


# ---- ROUGE-L ------------------------------------------------------------------------------------------------------
def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel (Hyyrö 2004): bit i of V is 0 where the LCS "steps" at position i of `a`; each token of `b` updates
    all len(a) bits at once with one add and a few logical ops on Python ints, so the cost is len(b) big-int
    operations instead of len(a) * len(b) table cells."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    match_masks: dict = {}
    for i, token in enumerate(a):
        match_masks[token] = match_masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & match_masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l_tokens(a: Sequence, b: Sequence) -> float:
    if not a or not b:
        return 0.0
    return 2.0 * lcs_length(a, b) / (len(a) + len(b))


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure (beta = 1) of two texts over lowercase word tokens; 0.0 when either has no words."""
    return rouge_l_tokens(word_tokens(a), word_tokens(b))


# ---- exact all-pairs search with an upper-bound prefilter ------------------------------------------------------------
class _WordCounts:
    """Word counts of many texts over a fixed vocabulary, split in two: the `n_frequent` most frequent words as a dense
    matrix, the long tail as a sparse one. Frequent words ("the", "a", ...) link nearly every pair, so they are cheap
    as a small dense product; the tail shares few words per pair, so its sparse x sparse product stays sparse."""

    def __init__(self, token_lists: list[list[str]], frequent: dict[str, int], rare: dict[str, int]) -> None:
        dense_index, dense_vals, rows, cols, vals = [[], []], [], [], [], []
        for r, tokens in enumerate(token_lists):
            for word, count in Counter(tokens).items():
                if word in frequent:
                    dense_index[0].append(r)
                    dense_index[1].append(frequent[word])
                    dense_vals.append(float(count))
                elif word in rare:
                    rows.append(r)
                    cols.append(rare[word])
                    vals.append(float(count))
        self.dense = torch.zeros(len(token_lists), len(frequent))
        self.dense[dense_index[0], dense_index[1]] = torch.tensor(dense_vals)
        index = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
        self.sparse = torch.sparse_coo_tensor(index, torch.tensor(vals, dtype=torch.float32),
                                              (len(token_lists), len(rare)), check_invariants=False).coalesce()
        self.dense_present = (self.dense > 0).float()
        self.sparse_present = torch.sparse_coo_tensor(self.sparse.indices(), torch.ones_like(self.sparse.values()),
                                                      self.sparse.shape, is_coalesced=True, check_invariants=False)


class _LCSBound:
    """Upper bounds on LCS(x, y) for x in any chunk of texts and every y in `tokens_b`, as a matrix.

    LCS(x, y) <= #{positions of x whose word occurs in y}, and likewise with x and y swapped: both counts are matrix
    products (word counts of one) . (word-present indicator of the other). Words absent from b cannot contribute,
    so the vocabulary is b's."""

    def __init__(self, tokens_b: list[list[str]], n_frequent: int = 48) -> None:
        df = Counter(t for tokens in tokens_b for t in set(tokens))
        self.frequent = {w: i for i, (w, _) in enumerate(df.most_common(n_frequent))}
        self.rare = {w: i for i, w in enumerate(w for w in df if w not in self.frequent)}
        self.b = _WordCounts(tokens_b, self.frequent, self.rare)
        self.b_present_t = self.b.sparse_present.t().coalesce()
        self.b_sparse_t = self.b.sparse.t().coalesce()

    def __call__(self, tokens_a: list[list[str]]) -> torch.Tensor:
        a = _WordCounts(tokens_a, self.frequent, self.rare)
        a_in_b = a.dense @ self.b.dense_present.T
        b_in_a = a.dense_present @ self.b.dense.T
        with warnings.catch_warnings():  # torch notes that its sparse CSR support (used internally) is "beta"
            warnings.simplefilter("ignore", UserWarning)
            a_in_b += torch.sparse.mm(a.sparse, self.b_present_t).to_dense()
            b_in_a += torch.sparse.mm(a.sparse_present, self.b_sparse_t).to_dense()
        return torch.minimum(a_in_b, b_in_a)


def near_duplicates(texts_a: Sequence[str], texts_b: Optional[Sequence[str]] = None, threshold: float = 0.7,
                    chunk_size: Optional[int] = None) -> list[tuple[int, int, float]]:
    """All pairs (i, j, rouge_l) with ROUGE-L F(texts_a[i], texts_b[j]) >= threshold, exact.

    texts_b=None compares texts_a with itself and returns each pair once (i < j). Pairs are pruned with the bound
    2 * LCS_bound / (len_a + len_b) < threshold before the exact LCS, which keeps it fast for realistic data."""
    same = texts_b is None
    tokens_a = [word_tokens(t) for t in texts_a]
    tokens_b = tokens_a if same else [word_tokens(t) for t in texts_b]
    if not tokens_a or not tokens_b:
        return []
    bound = _LCSBound(tokens_b)
    if chunk_size is None:  # rows of a per chunk: keeps each (chunk, len(b)) float matrix near 128 MB at most
        chunk_size = max(16, min(2048, MATRIX_ELEMENTS // len(tokens_b)))
    len_b = torch.tensor([len(t) for t in tokens_b], dtype=torch.float32)
    pairs = []
    for start in range(0, len(tokens_a), chunk_size):
        chunk = tokens_a[start:start + chunk_size]
        len_a = torch.tensor([len(t) for t in chunk], dtype=torch.float32)
        # F >= threshold needs 2 * LCS >= threshold * (len_a + len_b)
        keep = 2 * bound(chunk) >= (threshold - 1e-6) * (len_a[:, None] + len_b[None, :]).clamp(min=1)
        if same:  # each pair once: i < j
            keep = torch.triu(keep, diagonal=start + 1)
        for i, j in keep.nonzero().tolist():
            score = rouge_l_tokens(chunk[i], tokens_b[j])
            if score >= threshold:
                pairs.append((start + i, j, score))
    return pairs


def max_rouge_l(texts: Sequence[str], pool: Sequence[str], floor: float = 0.0) -> list[float]:
    """For each text, its highest ROUGE-L against the pool (only values >= floor are exact; lower ones read 0.0)."""
    best = [0.0] * len(texts)
    for i, _, score in near_duplicates(texts, pool, threshold=max(floor, 1e-6)):
        best[i] = max(best[i], score)
    return best


# ---- MinHash + LSH for large sets --------------------------------------------------------------------------------------
def shingles(text: str, n: int = 2) -> set[str]:
    """Word n-grams of the text (the words themselves when it is shorter than n)."""
    tokens = word_tokens(text)
    if len(tokens) < n:
        return set(tokens)
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def minhash_signatures(texts: Iterable[str], num_perm: int = 128, ngram: int = 2, seed: int = 0) -> np.ndarray:
    """(len(texts), num_perm) int64 MinHash signatures over word n-gram shingles. Two rows agree in a column with
    probability equal to the Jaccard similarity of the shingle sets. Texts without words get an all-max row."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _MERSENNE_PRIME, size=num_perm, dtype=np.int64)
    b = rng.integers(0, _MERSENNE_PRIME, size=num_perm, dtype=np.int64)
    rows = []
    for text in texts:
        hashes = np.fromiter((zlib.crc32(s.encode("utf-8")) & _MERSENNE_PRIME for s in shingles(text, ngram)),
                             dtype=np.int64)
        if hashes.size == 0:
            rows.append(np.full(num_perm, _MERSENNE_PRIME, dtype=np.int64))
            continue
        rows.append(((hashes[:, None] * a[None, :] + b[None, :]) % _MERSENNE_PRIME).min(axis=0))
    return np.stack(rows) if rows else np.zeros((0, num_perm), dtype=np.int64)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm whose S-curve midpoint (1/bands)**(1/rows) is closest to threshold."""
    best = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        midpoint = (1.0 / bands) ** (1.0 / rows)
        if best is None or abs(midpoint - threshold) < best[0]:
            best = (abs(midpoint - threshold), bands, rows)
    return best[1], best[2]


def lsh_candidate_pairs(signatures: np.ndarray, threshold: float = 0.7, bands: Optional[int] = None,
                        rows: Optional[int] = None) -> set[tuple[int, int]]:
    """Pairs (i < j) that share at least one band bucket: likely Jaccard >= threshold (approximate, may miss some)."""
    n, num_perm = signatures.shape
    if bands is None or rows is None:
        bands, rows = lsh_params(threshold, num_perm)
    candidates: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        block = np.ascontiguousarray(signatures[:, band * rows:(band + 1) * rows])
        for i in range(n):
            buckets.setdefault(block[i].tobytes(), []).append(i)
        for members in buckets.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    candidates.add((members[x], members[y]))
    return candidates


def dedup_indices(texts: Sequence[str], threshold: float = 0.7, method: str = "auto", num_perm: int = 128,
                  seed: int = 0) -> list[int]:
    """Indices to drop so that no two kept texts are near-duplicates (the first of each group is kept).

    method="exact": ROUGE-L >= threshold via `near_duplicates`. method="minhash": LSH candidates on word-bigram
    Jaccard, each verified with ROUGE-L >= threshold (so no false positives, but pairs LSH misses stay).
    method="auto": exact up to EXACT_PAIR_LIMIT pairs, MinHash above."""
    n = len(texts)
    if method == "auto":
        method = "exact" if n * (n - 1) // 2 <= EXACT_PAIR_LIMIT else "minhash"
    if method == "exact":
        pairs = [(i, j) for i, j, _ in near_duplicates(texts, None, threshold)]
    elif method == "minhash":
        tokens = [word_tokens(t) for t in texts]
        candidates = lsh_candidate_pairs(minhash_signatures(texts, num_perm=num_perm, seed=seed), threshold)
        pairs = [(i, j) for i, j in candidates if rouge_l_tokens(tokens[i], tokens[j]) >= threshold]
    else:
        raise ValueError(f"unknown dedup method {method!r}; use 'auto', 'exact' or 'minhash'")
    dropped: set[int] = set()
    for i, j in sorted(pairs):
        if i not in dropped:  # i is kept, so its near-duplicate j goes
            dropped.add(j)
    return sorted(dropped)


# ---- near-duplicate examples (instruction + input) ----------------------------------------------------------------
class NearDuplicateFinder:
    """Near-duplicate pairs between two lists of examples (dicts with `instruction` and optional `input`): ROUGE-L F
    >= threshold between the instructions (exact search, or MinHash/LSH candidates confirmed by ROUGE-L) and, when
    either has an input, between the inputs."""

    def __init__(self, method: str, threshold: float, seed: int = 0) -> None:
        if method not in ("exact", "minhash"):
            raise UserError(f"near-duplicate method {method!r}: use auto, exact or minhash")
        if not 0 < threshold <= 1:
            raise UserError(f"--near_dup_threshold {threshold}: must be in (0, 1]")
        self.method, self.threshold, self.seed = method, threshold, seed

    def pairs(self, examples_a: Sequence[dict], examples_b: Sequence[dict]) -> list[tuple[int, int, float]]:
        """(i, j, ROUGE-L of the instructions) for each near-duplicate pair."""
        found = self._instruction_pairs([e["instruction"] for e in examples_a], [e["instruction"] for e in examples_b])
        return [(i, j, score) for i, j, score in found if self._inputs_match(examples_a[i], examples_b[j])]

    def _inputs_match(self, a: dict, b: dict) -> bool:
        input_a, input_b = (a.get("input") or "").strip(), (b.get("input") or "").strip()
        if not input_a and not input_b:
            return True
        return bool(input_a and input_b) and (input_a == input_b or rouge_l(input_a, input_b) >= self.threshold)

    def _instruction_pairs(self, texts_a: Sequence[str], texts_b: Sequence[str]) -> list[tuple[int, int, float]]:
        if not texts_a or not texts_b:
            return []
        if self.method == "exact":
            return near_duplicates(texts_a, texts_b, self.threshold)
        # word sets, not bigrams: ROUGE-L F >= t needs a word-overlap Dice >= t, i.e. a Jaccard >= t / (2 - t), so
        # banding at that Jaccard keeps the true pairs likely; bigrams of a lightly edited text overlap far less
        signatures = minhash_signatures([*texts_a, *texts_b], ngram=1, seed=self.seed)
        n_a = len(texts_a)
        found = []
        jaccard = self.threshold / (2 - self.threshold)
        for x, y in lsh_candidate_pairs(signatures, jaccard):  # x < y: only a-b pairs matter
            if x < n_a <= y:
                i, j = x, y - n_a
                score = rouge_l_tokens(word_tokens(texts_a[i]), word_tokens(texts_b[j]))
                if score >= self.threshold:
                    found.append((i, j, score))
        return found
