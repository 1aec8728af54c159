"""Reference-answer loss: how likely the model finds held-out reference answers, under its own chat format.

For each (instruction, reference answer) pair the conversation is rendered and tokenized exactly as training data is
(`lit_gpt.data.tokenize.tokenize_examples`: the prompt masked, the answer and its end-of-turn token trained), and the
negative log-likelihood of the answer tokens is summed. The report gives the token-weighted mean NLL over all answers
(nats per token) and its perplexity exp(mean), plus each example's NLL and token count, so two models can be compared
paired over the same answers (`lit_gpt.eval.statistics`). Lower is better; it is the training loss's held-out twin,
comparable only between models with the same tokenizer.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import torch

from lit_gpt.model import GPT


@dataclass
class ReferenceLoss:
    mean_nll: float  # nats per answer token, over all answers' tokens
    perplexity: float  # exp(mean_nll)
    tokens: int  # answer tokens scored
    examples: int
    per_example_nll: list = field(default_factory=list)  # summed over each answer's tokens
    per_example_tokens: list = field(default_factory=list)

    # with `eos_id`: the same answers' loss without their end-of-turn tokens, from the same forward passes
    without_eos: Optional["ReferenceLoss"] = None

    def per_example_mean(self) -> list:
        """Each answer's own mean NLL per token (what a paired comparison resamples)."""
        return [nll / n for nll, n in zip(self.per_example_nll, self.per_example_tokens)]

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["without_eos"] is None:
            del d["without_eos"]
        return d


@torch.inference_mode()
def reference_loss(model: GPT, examples: Sequence[dict], micro_batch_size: int = 8,
                   eos_id: Optional[int] = None) -> ReferenceLoss:
    """Summed and mean answer-token NLL over prepared examples ({"input_ids", "labels"}, labels -100 outside the
    answer; longer than the model's context: truncated to it). Only the answer positions go through the LM head.

    Examples run length-sorted, right-padded, in batches of a fixed token budget: `micro_batch_size` rows of the
    longest example (the memory peak), so shorter examples run many more rows per forward. With `eos_id`, the
    result's `without_eos` is the loss of the answers' text alone (labels equal to eos_id left out), summed from the
    same token losses: no second forward."""
    if not examples:
        raise ValueError("no examples to score")
    device = next(model.parameters()).device
    block = model.config.block_size
    inputs = [e["input_ids"][:block + 1] for e in examples]
    labels = [e["labels"][:block + 1] for e in examples]
    nll, text_nll = [0.0] * len(examples), [0.0] * len(examples)
    counts = [int((lab[1:] != -100).sum()) for lab in labels]
    text_counts = [int(((lab[1:] != -100) & (lab[1:] != eos_id)).sum()) for lab in labels]
    was_training = model.training
    model.eval()
    for rows in token_budget_batches([x.numel() - 1 for x in inputs], micro_batch_size):
        sums = _answer_nll(model, [inputs[i] for i in rows], [labels[i] for i in rows], device, eos_id)
        for i, (value, text_value) in zip(rows, zip(*sums)):
            nll[i], text_nll[i] = value, text_value
    model.train(was_training)
    result = _summary(nll, counts)
    if eos_id is not None and sum(text_counts):
        result.without_eos = _summary(text_nll, text_counts)
    return result


def _summary(nll: list, counts: list) -> ReferenceLoss:
    """The ReferenceLoss of per-example summed NLLs and token counts (examples without a scored token left out)."""
    total_tokens = sum(counts)
    if total_tokens == 0:
        raise ValueError("the examples have no answer tokens to score")
    mean = sum(nll) / total_tokens
    kept = [i for i, n in enumerate(counts) if n > 0]
    return ReferenceLoss(mean, math.exp(mean), total_tokens, len(kept), [nll[i] for i in kept],
                         [counts[i] for i in kept])


def token_budget_batches(widths: Sequence[int], rows_of_longest: int) -> "list[list[int]]":
    """Indices of the sequences (of these widths), shortest first, in batches whose rows x widest stay within
    `rows_of_longest` x the widest sequence of all."""
    budget = rows_of_longest * max(max(widths), 1)
    batches: list[list[int]] = []
    for i in sorted(range(len(widths)), key=lambda i: widths[i]):
        if batches and (len(batches[-1]) + 1) * max(widths[i], 1) <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def padded_batch(inputs: list, labels: list, device: torch.device) -> "tuple[torch.Tensor, torch.Tensor]":
    """(x, y), (rows, longest - 1): each sequence's input ids and next-token labels, right-padded (0 and -100)."""
    width = max(x.numel() for x in inputs) - 1
    x = torch.zeros(len(inputs), width, dtype=torch.long, device=device)
    y = torch.full((len(inputs), width), -100, dtype=torch.long, device=device)
    for r, (ids, lab) in enumerate(zip(inputs, labels)):
        n = ids.numel() - 1
        x[r, :n], y[r, :n] = ids[:-1], lab[1:]
    return x, y


def _answer_nll(model: GPT, inputs: list, labels: list, device: torch.device,
                eos_id: Optional[int] = None) -> tuple[list, list]:
    """Each sequence's summed NLL of its answer tokens (labels != -100), and of those that are not `eos_id`, from one
    right-padded forward."""
    x, y = padded_batch(inputs, labels, device)
    scored = y != -100
    if not bool(scored.any()):
        return [0.0] * len(inputs), [0.0] * len(inputs)
    # each answer token's NLL, (answer tokens,) in row-major order; the head runs on the answer positions in chunks,
    # so their (answer tokens, vocab) float32 logits (12 GB for 64 rows of 1,000 tokens at a 49k vocabulary) never
    # exist at once
    token_nll = model(x, targets=y, reduction="none").double()
    row_of_token = torch.arange(len(inputs), device=device)[:, None].expand_as(y)[scored]
    text = y[scored] != (-100 if eos_id is None else eos_id)  # -100 is never a scored label: all text
    sums = torch.zeros(2, len(inputs), dtype=torch.float64, device=device)
    sums[0].index_add_(0, row_of_token, token_nll)
    sums[1].index_add_(0, row_of_token[text], token_nll[text])
    return tuple(sums.tolist())  # one transfer per batch
