"""lit_gpt/data/order.py: the training orders.

Each mode gives its documented order on real prepared Dolly rows (sources = Dolly's categories, scores carried through
the data pipeline), shuffle differs per epoch and repeats across reruns, and the training loop's batching keeps every
order except shuffle as requested."""

import itertools
import json

import pytest

from lit_gpt.data.order import ORDERS, epoch_order, may_regroup_by_length, order_hash
from lit_gpt.data.prepare import prepare
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.records import iter_records
from lit_gpt.train.dataset import TrainingSet, epoch_batches
from lit_gpt.utils import UserError


@pytest.fixture(scope="module")
def examples(tiny_checkpoint_dir, shared_dir, tmp_path_factory):
    """60 Dolly rows with a `score` (a coarse rating with ties) prepared by the data pipeline."""
    root = tmp_path_factory.mktemp("order")
    source = shared_dir / "datasets" / "dolly" / "dolly_3k.jsonl"
    rows = [row for _, row in itertools.islice(iter_records(source), 60)]
    scored = root / "dolly_scored.jsonl"
    with scored.open("w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({"instruction": row["instruction"], "input": row["context"], "output": row["response"],
                                "source": row["category"], "score": (i * 7) % 5 / 2}) + "\n")
    checkpoint_dir = tiny_checkpoint_dir("smollm2", block_size=256)
    prepare(iter_records(scored), name="dolly", source_files=[scored], checkpoint_dir=checkpoint_dir,
            destination_path=root / "data", test_split_fraction=0.0, max_seq_length=256)
    train, _, _ = load_prepared(root / "data")
    assert len(train) >= 50 and len({e["source"] for e in train}) >= 4 and all("score" in e for e in train)
    return train


def is_permutation(order, n):
    return sorted(order) == list(range(n))


def test_shuffle_new_every_epoch_same_every_rerun(examples):
    n = len(examples)
    epochs = [epoch_order(examples, epoch, seed=3, order="shuffle") for epoch in range(3)]
    assert all(is_permutation(o, n) for o in epochs)
    assert len({tuple(o) for o in epochs}) == 3
    assert epochs == [epoch_order(examples, epoch, seed=3, order="shuffle") for epoch in range(3)]
    assert epoch_order(examples, 0, seed=4, order="shuffle") != epochs[0]
    assert order_hash(epochs[0]) == order_hash(list(epochs[0])) != order_hash(epochs[1])


def test_as_given(examples):
    assert epoch_order(examples, 5, seed=3, order="as_given") == list(range(len(examples)))


def test_by_source_blocks(examples):
    order = epoch_order(examples, 0, seed=3, order="by_source")
    assert is_permutation(order, len(examples))
    sources = [examples[i]["source"] for i in order]
    blocks = [s for s, _ in itertools.groupby(sources)]
    assert blocks == sorted(set(sources))  # one contiguous block per source, alphabetical
    # inside a block: that source's examples, reshuffled each epoch, the same on a rerun
    next_epoch = epoch_order(examples, 1, seed=3, order="by_source")
    assert [examples[i]["source"] for i in next_epoch] == sources and next_epoch != order
    assert epoch_order(examples, 0, seed=3, order="by_source") == order


def test_by_length(examples):
    lengths = [len(e["input_ids"]) for e in examples]
    ascending = epoch_order(examples, 0, seed=3, order="by_length_asc")
    descending = epoch_order(examples, 2, seed=9, order="by_length_desc")
    assert [lengths[i] for i in ascending] == sorted(lengths)
    assert [lengths[i] for i in descending] == sorted(lengths, reverse=True)
    for order in (ascending, descending):  # ties keep train.pt's order
        for a, b in zip(order, order[1:]):
            assert lengths[a] != lengths[b] or a < b


def test_curriculum(examples):
    order = epoch_order(examples, 1, seed=3, order="curriculum")
    scores = [examples[i]["score"] for i in order]
    assert scores == sorted(scores) and is_permutation(order, len(examples))
    assert all(a < b for a, b in zip(order, order[1:]) if examples[a]["score"] == examples[b]["score"])
    unscored = [dict(e) for e in examples]
    del unscored[7]["score"]
    with pytest.raises(UserError, match=r"curriculum needs a `score`.* 1 of \d+ have none \(first: example 7"):
        epoch_order(unscored, 0, 0, "curriculum")


def test_batches_keep_requested_orders(examples, tiny_checkpoint_dir):
    data = TrainingSet(examples, max_seq_length=255, source="dolly", vocab_size=49152)
    assert len(data) == len(examples)
    for order in ORDERS:
        if order == "shuffle":
            continue
        assert not may_regroup_by_length(order)
        expected = epoch_order(data.raw, 0, 7, order)
        batches = epoch_batches(data, 0, seed=7, order=order, batch_size=8)
        # the same examples in the same batches, in the same sequence (only sorted by length inside a batch)
        assert [sorted(b) for b in batches] == [sorted(expected[s:s + 8]) for s in range(0, len(expected), 8)]
    # shuffle alone regroups by length to save padding: every example once, batches of similar lengths
    assert may_regroup_by_length("shuffle")
    batches = epoch_batches(data, 0, seed=7, order="shuffle", batch_size=8)
    assert is_permutation([i for b in batches for i in b], len(data))
