"""lit_gpt/studies/evaluation.py: the answer losses with and without the end-of-turn token, and which answers can be
scored both ways."""

import pytest
import torch

from helpers import make_model, random_examples
from lit_gpt.eval.reference_loss import reference_loss
from lit_gpt.studies.evaluation import _scorable, answer_losses

EOS = 2


def with_eos(examples):
    """Each example ends with a trained EOS, as prepared data does."""
    return [{"input_ids": torch.cat([e["input_ids"], torch.tensor([EOS])]),
             "labels": torch.cat([e["labels"], torch.tensor([EOS])]), "truncated": i == 0}
            for i, e in enumerate(examples)]


def test_the_loss_without_eos_leaves_out_only_the_end_of_turn_labels():
    """From one pass: the same numbers as scoring the answers again with their EOS labels masked."""
    model = make_model(dtype=torch.float32)
    (example,) = with_eos(random_examples(1, seed=3))
    example["labels"][example["labels"] == EOS] = 5  # no other EOS in the answer
    example["labels"][-1] = EOS
    masked = {**example, "labels": example["labels"].clone()}
    masked["labels"][-1] = -100
    result = answer_losses(model, [example], EOS, batch_size=2)
    again = reference_loss(model, [masked])
    assert result["tokens_no_eos"] == again.tokens == result["tokens"] - 1
    assert result["token_nll_no_eos"] == pytest.approx(again.mean_nll, rel=1e-6)
    assert result["answer_nll_no_eos"] == pytest.approx(again.per_example_mean(), rel=1e-6)
    assert example["labels"][-1] == EOS  # the original is untouched
    answer_only_eos = {"labels": torch.tensor([-100, -100, EOS])}
    assert not _scorable(answer_only_eos, EOS) and _scorable(example, EOS)


def test_answer_losses_token_weighted_and_per_answer_with_and_without_eos():
    model = make_model(dtype=torch.float32)
    examples = [e for e in with_eos(random_examples(5, seed=1)) if _scorable(e, EOS)]
    eos_labels = sum(int((e["labels"][1:] == EOS).sum()) for e in examples)
    result = answer_losses(model, examples, EOS, batch_size=2)
    full = reference_loss(model, examples)
    # float32 sums over other chunks of the head (batches of 2 here, 8 there): equal to rounding
    assert result["token_nll"] == pytest.approx(full.mean_nll)
    assert result["answer_nll"] == pytest.approx(full.per_example_mean(), rel=1e-6)
    assert result["tokens_no_eos"] == result["tokens"] - eos_labels
    assert len(result["answer_nll_no_eos"]) == len(result["answer_nll"]) == result["answers"] == len(examples)
    assert result["cut"] == 1
    assert result["answer_nll_no_eos"] != result["answer_nll"]
