"""lit_gpt/studies/compare.py: variant names."""

from lit_gpt.studies.compare import make_variants


def test_variant_names():
    names = [v.name for v in make_variants(["data/a", "data/b"], ["shuffle"], [1])]
    assert names == ["a", "b"]
    variants = make_variants(["data/a"], ["shuffle", "as_given"], [1, 3])
    assert [(v.name, v.order, v.epochs) for v in variants] == [
        ("a-shuffle-1ep", "shuffle", 1), ("a-shuffle-3ep", "shuffle", 3),
        ("a-as_given-1ep", "as_given", 1), ("a-as_given-3ep", "as_given", 3)]
    assert [v.name for v in make_variants(["x/data", "y/data"], ["shuffle"], [1])] == ["data-1", "data-2"]
