"""lit_gpt/fused_loss.py: the fused, chunked LM head + loss gives the plain full-logits losses and gradients."""

import pytest
import torch
import torch.nn.functional as F

import lit_gpt.fused_loss
from helpers import (MaxAllocation, assert_same_grads, bf16_errors, full_logits_loss, grads, make_model,
                     masked_head_loss, random_examples)
from lit_gpt.fused_loss import linear_cross_entropy
from lit_gpt.lora import LoRAConfig
from lit_gpt.train.dataset import TrainingSet


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 3 rows of logits (vocab 256), so every fused computation spans several chunks."""
    monkeypatch.setattr(lit_gpt.fused_loss, "LOGITS_CHUNK_ELEMENTS", 3 * 256)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("head_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("softcap", [None, 0.05], ids=["plain", "softcap"])
def test_fused_head_loss_equals_full_logits(lora, tied, head_bias, softcap, small_chunks):
    """softcap: Gemma 2's cap * tanh(logits / cap), which the fused path differentiates through in the forward;
    the cap is small enough to bend these logits (a fused path without it would be off)."""
    data = TrainingSet(random_examples(6), 64, "test", 256)
    input_ids, targets = data.collate(list(range(6)), torch.device("cpu"))
    model = make_model(lora=lora, tie_embeddings=tied, lm_head_bias=head_bias, final_logit_softcapping=softcap)
    if softcap is not None:
        with torch.no_grad():
            assert model.lm_head(model.ln_f(model.wte(input_ids))).abs().max() > softcap

    loss_fused = model(input_ids, targets=targets)
    (loss_fused * 0.37).backward()  # a non-unit upstream gradient, as the loop's 1 / n_targets scaling
    grads_fused = grads(model)
    model.zero_grad(set_to_none=True)
    loss_plain = full_logits_loss(model, input_ids, targets)
    (loss_plain * 0.37).backward()

    torch.testing.assert_close(loss_fused, loss_plain, rtol=1e-12, atol=1e-12)
    assert_same_grads(grads_fused, grads(model))
    with torch.no_grad():  # validation: the same loss, no gradient work
        torch.testing.assert_close(model(input_ids, targets=targets), loss_plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("head_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("softcap", [None, 0.05], ids=["plain", "softcap"])
def test_fused_per_token_loss_equals_full_logits(lora, tied, head_bias, softcap, small_chunks):
    """reduction "none" (preference training's per-answer log-probabilities): each trained position's loss, and
    the gradients of any per-position weighting of them, equal the full-logits computation's."""
    data = TrainingSet(random_examples(6), 64, "test", 256)
    input_ids, targets = data.collate(list(range(6)), torch.device("cpu"))
    model = make_model(lora=lora, tie_embeddings=tied, lm_head_bias=head_bias, final_logit_softcapping=softcap)
    trained = targets != -100
    weights = torch.linspace(-1.0, 2.0, int(trained.sum()), dtype=torch.float64)  # each row its own upstream grad

    losses_fused = model(input_ids, targets=targets, reduction="none")
    (losses_fused * weights).sum().backward()
    grads_fused = grads(model)
    model.zero_grad(set_to_none=True)
    logits = model(input_ids)
    if softcap is not None:
        assert logits.abs().max() > 0.5 * softcap  # the cap bends these logits
    losses_plain = F.cross_entropy(logits[trained], targets[trained], reduction="none")
    (losses_plain * weights).sum().backward()

    assert losses_fused.shape == (int(trained.sum()),)
    torch.testing.assert_close(losses_fused, losses_plain, rtol=1e-12, atol=1e-12)
    assert_same_grads(grads_fused, grads(model))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids, targets=targets, reduction="none"), losses_plain,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fused_head_loss_bf16_as_accurate_as_plain(lora, small_chunks):
    """In bf16-true the fused head + loss is as close to the float64 result as the plain masked-head path is."""
    data = TrainingSet(random_examples(4), 64, "test", 256)
    input_ids, targets = data.collate(list(range(4)), torch.device("cpu"))
    errors = bf16_errors({"fused": lambda m, i, t: m(i, targets=t), "plain": masked_head_loss}, input_ids, targets,
                         tie_embeddings=True, lora=lora)
    for key, plain_error in errors["plain"].items():
        assert plain_error < 0.05, key  # bf16 itself is this close
        assert errors["fused"][key] <= 1.5 * plain_error + 1e-3, (key, errors["fused"][key], plain_error)


def test_fused_head_loss_without_targets_is_zero_with_zero_grads():
    """A micro-batch without any trained token (a rank's empty share) still runs a backward, with zero gradients."""
    model = make_model()
    loss = model(torch.zeros(1, 5, dtype=torch.long), targets=torch.full((1, 5), -100))
    loss.backward()
    assert loss.item() == 0.0
    assert all(float(g.abs().sum()) == 0.0 for g in grads(model).values())


def test_fused_head_never_holds_all_logits(small_chunks):
    """With targets, no tensor of (trained positions x vocab) elements exists in forward or backward; the plain
    path creates several."""
    model = make_model(dtype=torch.float32)
    input_ids = torch.randint(0, 256, (4, 20))
    with MaxAllocation() as fused:
        model(input_ids, targets=input_ids).backward()
    with MaxAllocation() as plain:
        masked_head_loss(model, input_ids, input_ids).backward()
    assert plain.largest >= 4 * 20 * 256
    # the largest left: the head weight (256 x 32), MLP activations (80 x 64), a chunk of logits (3 x 256)
    assert fused.largest <= 256 * 32


def test_linear_cross_entropy_plain_path_for_other_heads():
    """LoRA on the head (not a plain Linear) goes through the plain head + cross-entropy."""
    model = make_model()
    LoRAConfig(r=2, alpha=4, dropout=0.0, targets=("head",)).apply(model)
    x = torch.randn(7, 32, dtype=torch.float64)
    targets = torch.randint(0, 256, (7,))
    expected = F.cross_entropy(model.lm_head(x), targets, reduction="sum")
    torch.testing.assert_close(linear_cross_entropy(x, model.lm_head, targets).double(), expected)


@pytest.mark.parametrize("tied", [False, True], ids=["frozen-head", "trained-tied-head"])
def test_fused_per_token_loss_never_holds_all_logits(tied, small_chunks):
    """reduction "none" (preference training) holds no (positions x vocab) tensor either, also when the head is
    trained and its gradient is recomputed chunk by chunk in the backward."""
    model = make_model(dtype=torch.float32, lora=not tied, tie_embeddings=tied)
    input_ids = torch.randint(0, 256, (4, 20))
    with MaxAllocation() as fused:
        (model(input_ids, targets=input_ids, reduction="none") * torch.rand(80)).sum().backward()
    assert fused.largest <= 256 * 32  # the head weight; a chunk of logits is 3 x 256
