"""lit_gpt/data/similarity.py: ROUGE-L (bit-parallel LCS), near-duplicate search, MinHash/LSH, deduplication."""

import json
import random
import time

import numpy as np
import pytest

from lit_gpt.data.similarity import (dedup_indices, lcs_length, lsh_candidate_pairs, lsh_params, max_rouge_l,
                                     minhash_signatures, near_duplicates, rouge_l, rouge_l_tokens, shingles,
                                     word_tokens)


@pytest.fixture(scope="module")
def alpaca_instructions(shared_dir):
    rows = json.loads((shared_dir / "datasets/alpaca/alpaca_random_9k.json").read_text())
    return [r["instruction"] for r in rows]


def lcs_table(a, b):
    """Textbook O(n*m) dynamic program, the reference for the bit-parallel LCS."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_rouge_l_hand_computed():
    # LCS "the cat on the mat" = 5 of 6 and 6 words: F = 2 * 5 / 12
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(10 / 12)
    # the textbook case: LCS "the gunman" = 2 of 4 and 4 words: F = 0.5
    assert rouge_l("police killed the gunman", "the gunman kill police") == pytest.approx(0.5)
    # P = 2/3, R = 2/5 -> F = 2PR/(P+R) = 0.5
    assert rouge_l("a b c", "a x b y z") == pytest.approx(0.5)
    assert rouge_l("Hello, World!", "hello world") == 1.0  # case and punctuation do not count
    assert rouge_l("", "anything") == 0.0 and rouge_l("!!!", "...") == 0.0
    assert rouge_l("x", "y") == 0.0
    assert word_tokens("Don't stop_here, 3.5 größe") == ["don", "t", "stop", "here", "3", "5", "größe"]


def test_bit_parallel_lcs_equals_dynamic_program():
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("abcdef") for _ in range(rng.randint(0, 40))]
        assert lcs_length(a, b) == lcs_table(a, b), (a, b)
    long_a = [rng.choice("abcdefghij") for _ in range(300)]  # several machine words of bits
    long_b = [rng.choice("abcdefghij") for _ in range(200)]
    assert lcs_length(long_a, long_b) == lcs_table(long_a, long_b)


def test_near_duplicates_equal_brute_force(alpaca_instructions):
    rng = random.Random(1)
    pool = alpaca_instructions[:200]
    texts = alpaca_instructions[200:400]
    # plant near-duplicates: pool items with a word dropped or replaced
    for i in range(30):
        words = pool[i * 5].split()
        words[rng.randrange(len(words))] = "something"
        texts.append(" ".join(words))
    text_tokens, pool_tokens = [word_tokens(t) for t in texts], [word_tokens(t) for t in pool]
    for threshold in (0.5, 0.7):
        expected = {(i, j) for i, a in enumerate(text_tokens) for j, b in enumerate(pool_tokens)
                    if rouge_l_tokens(a, b) >= threshold}
        found = near_duplicates(texts, pool, threshold)
        assert {(i, j) for i, j, _ in found} == expected
        assert all(score == pytest.approx(rouge_l(texts[i], pool[j])) for i, j, score in found)
    assert len(expected) >= 30  # the planted ones at least
    # self-comparison: each pair once, i < j, same as brute force
    sample = alpaca_instructions[:150] + [t.upper() + "!" for t in alpaca_instructions[:5]]
    tokens = [word_tokens(t) for t in sample]
    expected = {(i, j) for i in range(len(sample)) for j in range(i + 1, len(sample))
                if rouge_l_tokens(tokens[i], tokens[j]) >= 0.7}
    assert {(i, j) for i, j, _ in near_duplicates(sample, None, 0.7)} == expected
    assert {(k, 150 + k) for k in range(5)} <= expected
    best = max_rouge_l(["Give three tips for staying healthy.", "zzz qqq"], ["give 3 tips for staying healthy"], 0.1)
    assert best[0] == pytest.approx(2 * 5 / 12) and best[1] == 0.0


def test_near_duplicates_10k_by_1k_takes_seconds(alpaca_instructions):
    texts = alpaca_instructions + alpaca_instructions[:800]  # ~10k
    pool = alpaca_instructions[-1000:]
    started = time.perf_counter()
    pairs = near_duplicates(texts, pool, 0.7)
    elapsed = time.perf_counter() - started
    assert elapsed < 20, f"{len(texts)} x {len(pool)} took {elapsed:.1f} s"
    found = {(i, j) for i, j, _ in pairs}
    offset = len(alpaca_instructions) - 1000
    assert all((offset + k, k) in found for k in range(1000))  # every pool item finds itself


def test_minhash_estimates_jaccard_and_lsh_finds_duplicates(alpaca_instructions):
    a = " ".join(f"w{i}" for i in range(100))
    b = " ".join(f"w{i}" for i in range(50, 150))  # unigram Jaccard 50 / 150
    sig = minhash_signatures([a, b, ""], num_perm=256, ngram=1)
    assert sig.shape == (3, 256) and sig.dtype == np.int64
    estimate = float((sig[0] == sig[1]).mean())
    assert abs(estimate - 1 / 3) < 0.1
    assert len(shingles("a b c", 2)) == 2 and shingles("a", 2) == {"a"}

    bands, rows = lsh_params(0.7, 128)
    assert bands * rows <= 128 and abs((1 / bands) ** (1 / rows) - 0.7) < 0.05

    texts = alpaca_instructions[:2000] + [t + " Be brief." for t in alpaca_instructions[:20]]
    candidates = lsh_candidate_pairs(minhash_signatures(texts), 0.7)
    found = sum((k, 2000 + k) in candidates for k in range(20))
    assert found >= 16  # approximate: the long ones are near-certain, very short instructions may be missed
    exact = dedup_indices(texts, 0.7, method="exact")
    approx = dedup_indices(texts, 0.7, method="minhash")
    assert set(range(2000, 2020)) <= set(exact)
    assert len(set(range(2000, 2020)) & set(approx)) >= 16
    for j in approx:  # each MinHash candidate was verified: a kept earlier text really is within ROUGE-L 0.7
        assert any(rouge_l(texts[i], texts[j]) >= 0.7 for i in range(j) if i not in approx)
    assert dedup_indices(texts[:50], 0.7, method="auto") == dedup_indices(texts[:50], 0.7, method="exact")
    with pytest.raises(ValueError):
        dedup_indices(texts, method="fuzzy")


def test_dedup_keeps_first_of_each_group():
    texts = ["write a poem about the sea", "write a poem about the sea please", "write a poem about the sea now",
             "completely different task here"]
    assert dedup_indices(texts, 0.7, method="exact") == [1, 2]
