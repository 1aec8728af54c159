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
from typing import Sequence

import torch
import torch.nn.functional as F

from lit_gpt.model import GPT


@dataclass
class ReferenceLoss:
    mean_nll: float  # nats per answer token, over all answers' tokens
    perplexity: float  # exp(mean_nll)
    tokens: int  # answer tokens scored
    examples: int
    per_example_nll: list = field(default_factory=list)  # summed over each answer's tokens
    per_example_tokens: list = field(default_factory=list)

    def per_example_mean(self) -> list:
        """Each answer's own mean NLL per token (what a paired comparison resamples)."""
        return [nll / n for nll, n in zip(self.per_example_nll, self.per_example_tokens)]

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def reference_loss(model: GPT, examples: Sequence[dict], micro_batch_size: int = 8) -> ReferenceLoss:
    """Summed and mean answer-token NLL over prepared examples ({"input_ids", "labels"}, labels -100 outside the
    answer; longer than the model's context: truncated to it). Examples run length-sorted in micro-batches, right-
    padded; only the answer positions go through the LM head."""
    if not examples:
        raise ValueError("no examples to score")
    device = next(model.parameters()).device
    block = model.config.block_size
    inputs = [e["input_ids"][:block + 1] for e in examples]
    labels = [e["labels"][:block + 1] for e in examples]
    nll = [0.0] * len(examples)
    counts = [int((lab[1:] != -100).sum()) for lab in labels]
    order = sorted(range(len(examples)), key=lambda i: inputs[i].numel())
    was_training = model.training
    model.eval()
    for start in range(0, len(order), micro_batch_size):
        rows = order[start: start + micro_batch_size]
        width = max(inputs[i].numel() for i in rows) - 1
        x = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        y = torch.full((len(rows), width), -100, dtype=torch.long, device=device)
        for r, i in enumerate(rows):
            n = inputs[i].numel() - 1
            x[r, :n], y[r, :n] = inputs[i][:-1], labels[i][1:]
        scored = y != -100
        if not bool(scored.any()):
            continue
        logits = model(x, output_mask=scored)  # (answer tokens, vocab)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> fp32, fp64 stays
        token_nll = F.cross_entropy(logits, y[scored], reduction="none").double()
        row_of_token = torch.arange(len(rows), device=device)[:, None].expand_as(y)[scored]
        sums = torch.zeros(len(rows), dtype=torch.float64, device=device).index_add_(0, row_of_token, token_nll)
        for r, i in enumerate(rows):
            nll[i] = float(sums[r])
    model.train(was_training)
    total_tokens = sum(counts)
    if total_tokens == 0:
        raise ValueError("the examples have no answer tokens to score")
    mean = sum(nll) / total_tokens
    kept = [i for i, n in enumerate(counts) if n > 0]
    return ReferenceLoss(mean, math.exp(mean), total_tokens, len(kept), [nll[i] for i in kept],
                         [counts[i] for i in kept])
