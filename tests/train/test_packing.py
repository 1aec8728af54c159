"""lit_gpt/train/packing.py: best-fit-decreasing rows that hold each example once and never overflow, the same
examples per step under every --order, collated rows, and a packed step or run that trains exactly like the
unpacked one (same loss and gradients to float32 rounding), with less padding."""

import contextlib
import random
from types import SimpleNamespace

import pytest
import torch

from helpers import assert_grads_close_by_norm, fast_args, grads, make_model, metrics_rows, random_examples
from lit_gpt.data.order import ORDERS
from lit_gpt.train.dataset import TrainingSet, epoch_batches
from lit_gpt.train.loop import finetune
from lit_gpt.train.packing import Packing, best_fit_decreasing, lay_out_rows, pack_batch
from lit_gpt.train.step import train_step

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny training steps: see conftest.one_thread
CPU = torch.device("cpu")


def test_best_fit_decreasing_fills_the_fullest_row_that_fits():
    # 6 opens a row (4 left), 5 another (5 left), 4 fills the first exactly, 3 and 2 fill the second, 1 opens a third
    assert best_fit_decreasing([6, 5, 4, 3, 2, 1], 10) == [[0, 2], [1, 3, 4], [5]]
    assert best_fit_decreasing([3, 7, 3], 10) == [[0, 1], [2]]  # ties: the earlier item first
    with pytest.raises(ValueError, match="does not fit"):
        best_fit_decreasing([11], 10)


def test_rows_never_exceed_capacity_hold_every_example_once_and_are_near_optimal():
    rng = random.Random(0)
    for _ in range(200):
        capacity = rng.choice([16, 64, 200])
        lengths = [rng.randint(1, capacity) for _ in range(rng.randint(1, 60))]
        batch = rng.sample(range(len(lengths)), len(lengths))
        rows = pack_batch(lengths, batch, capacity)
        assert sorted(i for row in rows for i in row) == sorted(batch)
        tokens = [sum(lengths[i] for i in row) for row in rows]
        assert max(tokens) <= capacity and tokens == sorted(tokens, reverse=True)  # fullest rows first
        fewest = -(-sum(lengths) // capacity)
        assert len(rows) <= 11 / 9 * fewest + 1  # best-fit decreasing's bound (the optimum is at least `fewest`)
        for row in rows:  # inside a row the examples keep the batch's order
            assert row == sorted(row, key=batch.index)
        assert rows == pack_batch(list(lengths), list(batch), capacity)  # deterministic


def ordered_data(n=64, seed=0) -> TrainingSet:
    """Examples with a source and a score, so that every --order applies."""
    raw = random_examples(n, max_len=30, seed=seed)
    for k, example in enumerate(raw):
        example.update(source=f"s{k % 3}", score=float((k * 7) % 11))
    return TrainingSet(raw, 64, "test", 256)


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("world", [1, 2])
def test_every_order_keeps_its_batches_and_packs_them_deterministically(order, world):
    """The order decides which examples share a step; packing only fills rows with them (and a rebuilt dataset, as a
    resumed run has, gets the same rows)."""
    data, again = ordered_data(), ordered_data()
    packing = Packing(capacity=64, rows_per_micro_batch=2)
    batches = epoch_batches(data, epoch=1, seed=5, order=order, batch_size=16)
    assert batches == epoch_batches(again, epoch=1, seed=5, order=order, batch_size=16)
    total_rows = 0
    for batch in batches:
        micro_batches = packing.micro_batches(data.lengths, batch, world)
        assert micro_batches == packing.micro_batches(again.lengths, batch, world)
        assert len(micro_batches) % world == 0 and all(len(mb) <= 2 for mb in micro_batches)
        rows = [row for mb in micro_batches for row in mb]
        assert sorted(i for row in rows for i in row) == sorted(batch)
        assert all(sum(data.lengths[i] for i in row) <= 64 for row in rows)
        total_rows += len(rows)
    assert total_rows < len(data) / 2  # short examples: several to a row


def test_collate_puts_examples_one_after_the_other_with_their_segments():
    data = TrainingSet(random_examples(3, min_len=4, max_len=9, seed=1), 64, "test", 256)
    a, b, c = data.lengths
    input_ids, targets, segments = Packing.collate(data, [[0, 2], [1]], CPU)
    assert input_ids.shape == targets.shape == segments.shape == (2, max(a + c, b))
    assert torch.equal(input_ids[0, :a], data.inputs[0]) and torch.equal(input_ids[0, a: a + c], data.inputs[2])
    assert torch.equal(targets[0, :a], data.targets[0]) and torch.equal(targets[0, a: a + c], data.targets[2])
    assert segments[0].tolist() == [0] * a + [1] * c + [-1] * (segments.shape[1] - a - c)
    assert segments[1].tolist() == [0] * b + [-1] * (segments.shape[1] - b)
    assert (targets[1, b:] == -100).all()
    empty = Packing.collate(data, [], CPU)  # a rank without rows still runs a pass: one padding token
    assert [t.tolist() for t in empty] == [[[0]], [[-100]], [[-1]]]
    assert Packing.padding_stats(data, [[[0, 2], [1]], []]) == (a + b + c, 2 * max(a + c, b))


def test_lay_out_rows_places_each_sequences_tensors_with_its_key_and_segment():
    pieces = [(torch.tensor([1, 2, 3]), torch.tensor([True, False, True])),
              (torch.tensor([4]), torch.tensor([True])), (torch.tensor([5, 6]), torch.tensor([False, True]))]
    ids, flags, segments, keys = lay_out_rows([[2, 1], [0]], pieces.__getitem__,
                                              ((-7, torch.long), (False, torch.bool)))
    assert ids.tolist() == [[5, 6, 4], [1, 2, 3]] and flags.dtype == torch.bool
    assert flags.tolist() == [[False, True, True], [True, False, True]]
    assert segments.tolist() == [[0, 0, 1], [0, 0, 0]] and keys.tolist() == [[2, 2, 1], [0, 0, 0]]
    ids, flags, segments, keys = lay_out_rows([[0], [1, 1]], lambda k: (torch.tensor([9] * (k + 1)),) * 2,
                                              ((-7, torch.long), (0, torch.long)))
    assert ids.tolist() == [[9, -7, -7, -7], [9, 9, 9, 9]]  # padded on the right to the longest row
    assert segments.tolist() == [[0, -1, -1, -1], [0, 0, 1, 1]] and keys.tolist() == [[0, -1, -1, -1], [1] * 4]


class OneRank:
    """The bits of Fabric that `train_step` uses, for rank `rank` of `world` (all_reduce keeps the local value)."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.global_rank, self.world_size, self.device = rank, world, CPU

    def no_backward_sync(self, model, enabled):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def all_reduce(self, tensor, reduce_op):
        return tensor

    def clip_gradients(self, model, optimizer, max_norm, error_if_nonfinite):
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


class RecordingOptimizer:
    """Keeps the gradients the step would apply."""

    def __init__(self, model):
        self.model, self.grads = model, None

    def step(self):
        self.grads = grads(self.model)

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)


def step_grads(data, batch, packing, lora, rank=0, world=1):
    model = make_model(dtype=torch.float32, lora=lora, sliding_window=8).train()  # windows shorter than rows
    optimizer = RecordingOptimizer(model)
    result = train_step(OneRank(rank, world), model, optimizer, SimpleNamespace(step=lambda: None), data, batch,
                        accum=4 // world, seed=0, step=0, grad_clip=None, precision="32-true", packing=packing)
    return result, optimizer.grads


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_packed_step_same_loss_and_gradients_as_unpacked_with_less_padding(lora):
    data = TrainingSet(random_examples(16, max_len=30, seed=2), 64, "test", 256)
    batch = epoch_batches(data, 0, seed=0, order="shuffle", batch_size=16)[0]
    plain, plain_grads = step_grads(data, batch, None, lora)
    packing = Packing(capacity=64, rows_per_micro_batch=2)
    packed, packed_grads = step_grads(data, batch, packing, lora)
    assert packed.loss == pytest.approx(plain.loss, rel=1e-6)
    assert_grads_close_by_norm(packed_grads, plain_grads, rel=1e-5)
    assert packed.tokens == plain.tokens == sum(data.lengths)
    assert packed.padded_tokens < plain.padded_tokens  # the reported non-padding share goes up
    # two ranks share the rows between them: their gradients (DDP averages them) add up to the one-rank step's
    halves = [step_grads(data, batch, packing, lora, rank, world=2)[1] for rank in (0, 1)]
    assert_grads_close_by_norm({k: (halves[0][k] + halves[1][k]) / 2 for k in plain_grads}, plain_grads, rel=1e-5)


def test_training_run_with_packing_equals_run_without(tmp_path, checkpoint, capitals_data):
    """The same seed and examples per step: packed rows give the unpacked run's losses step by step (the same
    maths, in float32). One row per micro-batch: nothing is padding, and the run reports so."""
    summaries, losses = {}, {}
    for packing in (False, True):
        out = tmp_path / f"packing-{packing}"
        args = fast_args(batch_size=8, micro_batch_size=1 if packing else 2, epochs=3, override_max_seq_length=128,
                         packing=packing)
        summaries[packing] = finetune("full", checkpoint, capitals_data, out, args)
        losses[packing] = [float(r["train_loss"]) for r in metrics_rows(out) if r.get("train_loss")]
    assert len(losses[True]) == len(losses[False]) == 6
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    assert losses[False][-1] < losses[False][0]  # it did train
    assert summaries[True]["final_val_loss"] == pytest.approx(summaries[False]["final_val_loss"], rel=1e-5)
    print("largest relative difference of a step's loss:",
          max(abs(a - b) / b for a, b in zip(losses[True], losses[False])))
    assert summaries[True]["non_pad_share"] == 1.0 > summaries[False]["non_pad_share"]
    assert all(float(r["non_pad_share"]) == 1.0 for r in metrics_rows(tmp_path / "packing-True") if r.get("train_loss"))
