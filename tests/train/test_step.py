"""lit_gpt/train/step.py: the learning-rate schedule, validation split over ranks, the fused AdamW's updates."""

import pytest
import torch

from helpers import make_model, tiny_config
from lit_gpt.model import GPT
from lit_gpt.train.args import TrainArgs
from lit_gpt.train.dataset import TrainingSet
from lit_gpt.train.step import lr_factor, make_optimizer, validate

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny training steps: see conftest.one_thread


def test_lr_schedule_warmup_then_cosine_to_zero():
    factors = [lr_factor(s, 10, 100) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] < 0.01


class FakeRank:
    """The bits of Fabric that `validate` uses, for rank `rank` of `world`; all_reduce records the local sums."""

    def __init__(self, rank: int, world: int):
        self.global_rank, self.world_size, self.device, self.reduced = rank, world, torch.device("cpu"), []

    def all_reduce(self, tensor, reduce_op):
        self.reduced.append(tensor.clone())
        return tensor


def test_validation_splits_the_test_set_over_ranks_and_reduces_sums():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    raw = [{"input_ids": torch.randint(0, 256, (n,)), "labels": torch.randint(0, 256, (n,))} for n in (5, 9, 3, 7, 12)]
    data = TrainingSet(raw, max_seq_length=64, source="test.pt", vocab_size=256)
    one = FakeRank(0, 1)
    loss = validate(one, model, data, micro_batch_size=2)
    ranks = [FakeRank(r, 2) for r in range(2)]
    for fake in ranks:
        validate(fake, model, data, micro_batch_size=2)
    torch.testing.assert_close(ranks[0].reduced[0] + ranks[1].reduced[0], one.reduced[0])
    assert one.reduced[0][1] == sum(data.n_targets) and loss == pytest.approx(float(one.reduced[0][0] / sum(data.n_targets)))
    assert ranks[1].reduced[0][1] > 0  # both ranks did part of the work
    limited = FakeRank(0, 1)
    validate(limited, model, data, micro_batch_size=2, eval_iters=1)  # only the first 2 examples
    assert limited.reduced[0][1] == data.n_targets[0] + data.n_targets[1]
    assert model.training  # validate restores the mode it found


def train_three_steps(dtype, optimizer_fn):
    model = make_model(dtype=dtype)
    optimizer = optimizer_fn(model)
    input_ids = torch.randint(0, 256, (2, 11), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        model(input_ids, targets=input_ids).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return optimizer, dict(model.named_parameters())


def per_tensor_adamw(model, args):
    """The plain AdamW loop over the same parameter groups as make_optimizer."""
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in make_optimizer(model, args.learning_rate, args.weight_decay).param_groups]
    return torch.optim.AdamW(groups, lr=args.learning_rate, foreach=False)


def test_fused_adamw_same_updates_as_per_tensor_loop():
    """The loop's optimizer (fused AdamW, decay only on matrices) moves the weights as the plain per-tensor AdamW;
    in bf16 its updates are at least as close to float64 ones (it rounds once per tensor, not once per op)."""
    args = TrainArgs(learning_rate=1e-2, weight_decay=0.1)
    start = dict(make_model().named_parameters())
    optimizer, fused = train_three_steps(torch.float32, lambda m: make_optimizer(m, args.learning_rate, args.weight_decay))
    assert optimizer.defaults["fused"]
    _, plain = train_three_steps(torch.float32, lambda m: per_tensor_adamw(m, args))
    for name in fused:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.allclose(fused["lm_head.weight"].double(), start["lm_head.weight"])  # they did move

    _, reference = train_three_steps(torch.float64, lambda m: per_tensor_adamw(m, args))
    _, fused16 = train_three_steps(torch.bfloat16, lambda m: make_optimizer(m, args.learning_rate, args.weight_decay))
    _, plain16 = train_three_steps(torch.bfloat16, lambda m: per_tensor_adamw(m, args))
    for name, ref in reference.items():
        update = ref.detach() - start[name].detach()
        error = lambda p: float((p.detach().double() - ref.detach()).norm() / update.norm())  # noqa: E731
        assert error(fused16[name]) <= 1.5 * error(plain16[name]) + 0.02, (name, error(fused16[name]), error(plain16[name]))
