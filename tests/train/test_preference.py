"""lit_gpt/train/preference.py: each loss on numbers worked out by hand (the arithmetic in the comments), and
sequence log-probabilities of a two-token vocabulary whose probabilities are 1/4 and 3/4."""

import math

import pytest
import torch

from lit_gpt.train.preference import dpo_loss, ipo_loss, orpo_loss, sequence_logps, simpo_loss


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_dpo_by_hand():
    # policy margin (-1) - (-3) = 2, reference margin (-2) - (-2.5) = 0.5: logits 0.5 * (2 - 0.5) = 0.75
    out = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.5), beta=0.5)
    assert out.losses.item() == pytest.approx(math.log(1 + math.exp(-0.75)))  # -log sigmoid(0.75) = 0.386871
    assert out.losses.item() == pytest.approx(0.3868710, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == (0.5, -0.25)  # 0.5 (-1 + 2), 0.5 (-3 + 2.5)
    assert out.accuracy.item() == 1.0
    smoothed = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.5), beta=0.5, label_smoothing=0.1)
    # 0.9 (-log sigmoid(0.75)) + 0.1 (-log sigmoid(-0.75)) = 0.9 * 0.386871 + 0.1 * 1.136871
    assert smoothed.losses.item() == pytest.approx(0.9 * 0.3868710 + 0.1 * 1.1368710, abs=1e-6)


def test_ipo_by_hand():
    # margin 2 - 0.5 = 1.5, target 1 / (2 * 0.25) = 2: (1.5 - 2)^2 = 0.25
    out = ipo_loss(t(-1.0, -1.0), t(-3.0, -1.0), t(-2.0, -1.0), t(-2.5, -1.0), tau=0.25)
    assert out.losses.tolist() == [0.25, 4.0]  # the second pair: margin 0, (0 - 2)^2
    assert out.loss.item() == 2.125


def test_simpo_by_hand():
    # 2 * (-0.5) - 2 * (-1.25) - 0.5 = 1: -log sigmoid(1) = log(1 + e^-1) = 0.313262
    out = simpo_loss(t(-0.5), t(-1.25), beta=2.0, gamma=0.5)
    assert out.losses.item() == pytest.approx(0.3132617, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == (-1.0, -2.5)


def test_orpo_by_hand():
    # p = 1/2 and 1/5: odds 1 and 1/4, log odds ratio log 4, sigmoid(log 4) = 4/5, -log(4/5) = 0.223144;
    # NLL of the chosen answer log 2 = 0.693147: 0.693147 + 0.5 * 0.223144 = 0.804719
    out = orpo_loss(t(math.log(0.5)), t(math.log(0.2)), t(math.log(2.0)), lam=0.5)
    assert out.losses.item() == pytest.approx(math.log(2) - 0.5 * math.log(0.8))
    assert out.losses.item() == pytest.approx(0.8047190, abs=1e-6)


def test_sequence_logps_sum_and_average_over_the_mask():
    # logits (0, log 3): probabilities 1/4 and 3/4 at every position
    logits = torch.tensor([0.0, math.log(3.0)]).expand(1, 3, 2)
    targets = torch.tensor([[1, 0, -100]])  # a padding target outside the mask is never looked up
    mask = torch.tensor([[True, True, False]])
    assert sequence_logps(logits, targets, mask).item() == pytest.approx(math.log(0.75) + math.log(0.25))
    assert sequence_logps(logits, targets, mask, average=True).item() == \
        pytest.approx((math.log(0.75) + math.log(0.25)) / 2)


def test_the_losses_pull_towards_the_chosen_answer():
    chosen, rejected = t(-2.0).requires_grad_(), t(-2.0).requires_grad_()
    for out in (dpo_loss(chosen, rejected, t(-2.0), t(-2.0)), ipo_loss(chosen, rejected, t(-2.0), t(-2.0)),
                simpo_loss(chosen, rejected), orpo_loss(chosen, rejected, -chosen)):
        grad_chosen, grad_rejected = torch.autograd.grad(out.loss, (chosen, rejected))
        assert grad_chosen < 0 < grad_rejected  # descending raises the chosen answer, lowers the rejected one
