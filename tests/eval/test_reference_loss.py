"""lit_gpt/eval/reference_loss.py and bootstrap.py: answer-token NLL equals a hand computation; paired intervals."""

import math

import torch
import torch.nn.functional as F

from helpers import tiny_config
from lit_gpt.eval.reference_loss import reference_loss
from lit_gpt.model import GPT


def example(ids, answer_from):
    ids = torch.tensor(ids)
    labels = ids.clone()
    labels[:answer_from] = -100
    return {"input_ids": ids, "labels": labels}


def test_reference_loss_equals_the_hand_computation():
    torch.manual_seed(0)
    model = GPT(tiny_config()).double().eval()
    examples = [example([1, 5, 9, 30, 31, 2], 3), example([1, 7, 2], 2), example([1, 4, 4, 4, 8, 8, 9, 2], 5)]
    result = reference_loss(model, examples, micro_batch_size=2)  # two micro-batches, padding in the first
    by_hand_sums, by_hand_counts = [], []
    for e in examples:
        ids = e["input_ids"]
        logp = F.log_softmax(model(ids[None])[0].double(), dim=-1)  # one example alone, no padding
        answer = [t for t in range(1, ids.numel()) if e["labels"][t] != -100]  # predicted from position t - 1
        by_hand_sums.append(-sum(float(logp[t - 1, ids[t]]) for t in answer))
        by_hand_counts.append(len(answer))
    assert result.per_example_tokens == by_hand_counts == [3, 1, 3]
    for ours, hand in zip(result.per_example_nll, by_hand_sums):
        assert math.isclose(ours, hand, rel_tol=1e-9)
    assert math.isclose(result.mean_nll, sum(by_hand_sums) / 7, rel_tol=1e-9)
    assert math.isclose(result.perplexity, math.exp(result.mean_nll)) and result.tokens == 7 and result.examples == 3
