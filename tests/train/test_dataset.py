"""lit_gpt/train/dataset.py: the batching plan, the examples' shift/truncate/drop, padding that changes no maths."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_same_grads, grads, make_model, masked_head_loss, random_examples
from lit_gpt.data.order import epoch_order
from lit_gpt.train.dataset import TrainingSet, epoch_batches, padding_stats, split_batch
from lit_gpt.utils import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny training steps: see conftest.one_thread


def _examples(lengths):
    raw = [{"input_ids": torch.arange(1, n + 2), "labels": torch.arange(1, n + 2)} for n in lengths]
    return TrainingSet(raw, max_seq_length=10_000, source="x", vocab_size=100_000)


def test_epoch_visits_every_example_once_and_reshuffles():
    data = _examples([(i * 37) % 50 + 1 for i in range(1000)])
    e0 = epoch_batches(data, 0, seed=1, order="shuffle", batch_size=16)
    e1 = epoch_batches(data, 1, seed=1, order="shuffle", batch_size=16)
    for batches in (e0, e1):
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000))
        assert len(batches) == math.ceil(1000 / 16)
    assert e0 != e1  # new order each epoch
    assert e0 == epoch_batches(data, 0, seed=1, order="shuffle", batch_size=16)  # deterministic
    assert e0 != epoch_batches(data, 0, seed=2, order="shuffle", batch_size=16)


def test_length_grouping_cuts_padding():
    data = _examples([(i * 7919) % 200 + 1 for i in range(2000)])
    micro = 4

    def share(batches):
        real = padded = 0
        for b in batches:
            r, p = padding_stats(data, split_batch(b, len(b) // micro or 1))
            real, padded = real + r, padded + p
        return real / padded

    grouped = share(epoch_batches(data, 0, 0, "shuffle", 32))
    # as_given keeps the batches' membership, only sorting inside them
    given = epoch_batches(data, 0, 0, "as_given", 32)
    assert [sorted(b) for b in given] == [list(range(s, min(s + 32, 2000))) for s in range(0, 2000, 32)]
    unsorted_share = share([list(range(s, min(s + 32, 2000))) for s in range(0, 2000, 32)])
    assert grouped > 0.95 > share(given) > unsorted_share
    print(f"non-pad share: length-grouped {grouped:.3f}, sorted within batch {share(given):.3f}, "
          f"none {unsorted_share:.3f}")


def test_split_batch_even_and_order_hook():
    assert split_batch(list(range(10)), 4) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert split_batch([0], 3) == [[0], [], []]
    assert epoch_order([{}] * 5, epoch=3, seed=0, order="as_given") == [0, 1, 2, 3, 4]
    with pytest.raises(UserError, match="--order 'sideways'"):
        epoch_order([{}] * 5, 0, 0, "sideways")


def test_examples_shift_truncate_and_drop():
    raw = [{"input_ids": torch.tensor([1, 5, 6, 7, 2]), "labels": torch.tensor([-100, -100, 6, 7, 2])},
           {"input_ids": torch.tensor([1, 5, 6]), "labels": torch.tensor([-100, -100, -100])}]
    data = TrainingSet(raw, max_seq_length=3, source="t.pt", vocab_size=10)
    assert len(data) == 1 and data.dropped == 1 and data.truncated == 1
    assert data.inputs[0].tolist() == [1, 5, 6] and data.targets[0].tolist() == [-100, 6, 7]
    input_ids, targets = data.collate([0, 0], torch.device("cpu"))
    assert input_ids.shape == (2, 3) and targets[0].tolist() == [-100, 6, 7]
    with pytest.raises(UserError, match="t.pt example 0"):
        TrainingSet([{"input_ids": torch.tensor([1, 99])}], 8, "t.pt", 10)


# ---- length grouping changes no maths --------------------------------------------------------------------------------
def per_example_losses(model, data, micro_batches):
    """{example index: summed CE over its targets} computed inside the given (padded) micro-batches."""
    out = {}
    for indices in micro_batches:
        input_ids, targets = data.collate(indices, torch.device("cpu"))
        logits = model(input_ids)
        losses = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none").sum(1)
        out.update({i: losses[row] for row, i in enumerate(indices)})
    return out


def test_length_grouping_keeps_each_example_loss():
    """The loop's length-grouped batches and plain batches in data order give every example the same loss
    (right padding is invisible to causal attention), and the grouped plan is a permutation of the data."""
    data = TrainingSet(random_examples(40, max_len=30), 64, "test", 256)
    model = make_model().eval()
    batches = epoch_batches(data, epoch=0, seed=3, order="shuffle", batch_size=8)
    grouped = [mb for b in batches for mb in split_batch(b, 2)]
    assert sorted(i for mb in grouped for i in mb) == list(range(len(data)))
    plain = [list(range(s, min(s + 4, len(data)))) for s in range(0, len(data), 4)]
    alone = [[i] for i in range(len(data))]
    with torch.no_grad():
        losses_grouped = per_example_losses(model, data, grouped)
        losses_plain = per_example_losses(model, data, plain)
        losses_alone = per_example_losses(model, data, alone)
    for i in range(len(data)):
        torch.testing.assert_close(losses_grouped[i], losses_alone[i], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(losses_plain[i], losses_alone[i], rtol=1e-12, atol=1e-12)
    padded = lambda mbs: sum(len(mb) * max(data.lengths[i] for i in mb) for mb in mbs)  # noqa: E731
    assert padded(grouped) < padded(plain)  # and it does save padding


def test_length_grouping_keeps_the_batch_gradient():
    """Summed over a batch, the gradient does not depend on how its examples are grouped into micro-batches."""
    data = TrainingSet(random_examples(12, max_len=30, seed=1), 64, "test", 256)
    model = make_model(lora=True)
    by_length = sorted(range(12), key=data.lengths.__getitem__)
    results = []
    for micro_batches in ([list(range(0, 6)), list(range(6, 12))], [by_length[:6], by_length[6:]]):
        model.zero_grad(set_to_none=True)
        for indices in micro_batches:
            masked_head_loss(model, *data.collate(indices, torch.device("cpu"))).backward()
        results.append(grads(model))
    assert_same_grads(*results)
