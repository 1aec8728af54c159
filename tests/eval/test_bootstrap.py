"""lit_gpt/eval/bootstrap.py: the paired interval, and how many items a difference of the observed size needs."""

from lit_gpt.eval.bootstrap import paired_bootstrap


def test_paired_bootstrap_interval():
    a = [0.0, 1.0] * 50
    same = paired_bootstrap(a, a)
    assert same.difference == 0.0 and same.low == same.high == 0.0 and not same.significant
    better = paired_bootstrap(a, [1.0] * 100)  # b wins on the 50 items a misses
    assert better.difference == 0.5 and 0.35 < better.low < 0.5 < better.high < 0.65 and better.significant
    noisy = paired_bootstrap(a, a[1:] + a[:1])  # shifted: half the items differ, either way
    assert noisy.low < 0.0 < noisy.high and noisy.verdict() == "no significant difference"
    assert paired_bootstrap(a, [1.0] * 100, seed=3).to_dict()["significant"] is True


def test_items_needed_grows_as_the_effect_shrinks_and_is_met_when_checked():
    a = [0.0, 1.0] * 20
    b = list(a)
    for i in (0, 2, 4, 6, 8, 10):  # 6 items up, 4 down: +0.05 on average, with much noise
        b[i] = 1.0
    for i in (1, 3, 5, 7):
        b[i] = 0.0
    small = paired_bootstrap(a, b)
    assert not small.significant and small.items_needed() > small.items
    # the same items repeated items_needed / items times: the interval has shrunk to exclude 0
    repeat = -(-small.items_needed() // small.items) + 1
    assert paired_bootstrap(a * repeat, b * repeat).significant
    assert paired_bootstrap(a, a).items_needed() is None  # no difference: no size would show one
    assert paired_bootstrap(a, b).to_dict()["items_needed"] == small.items_needed()
