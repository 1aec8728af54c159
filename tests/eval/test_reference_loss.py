"""lit_gpt/eval/reference_loss.py and bootstrap.py: answer-token NLL equals a hand computation; paired intervals."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import DOLLY_COLUMNS, MaxAllocation, tiny_config
from lit_gpt.eval.reference_loss import reference_loss, token_budget_batches
import lit_gpt.fused_loss
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


@torch.inference_mode()
def reference_loss_in_fixed_micro_batches(model: GPT, examples: list, micro_batch_size: int) -> list:
    """The implementation before token-budget batches (length-sorted micro-batches of a fixed number of rows): each
    example's summed answer NLL, what the new batching must reproduce."""
    block = model.config.block_size
    inputs = [e["input_ids"][:block + 1] for e in examples]
    labels = [e["labels"][:block + 1] for e in examples]
    nll = [0.0] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: inputs[i].numel())
    for start in range(0, len(order), micro_batch_size):
        rows = order[start: start + micro_batch_size]
        width = max(inputs[i].numel() for i in rows) - 1
        x = torch.zeros(len(rows), width, dtype=torch.long)
        y = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, i in enumerate(rows):
            n = inputs[i].numel() - 1
            x[r, :n], y[r, :n] = inputs[i][:-1], labels[i][1:]
        scored = y != -100
        token_nll = F.cross_entropy(model(x, output_mask=scored).float(), y[scored], reduction="none").double()
        row_of_token = torch.arange(len(rows))[:, None].expand_as(y)[scored]
        sums = torch.zeros(len(rows), dtype=torch.float64).index_add_(0, row_of_token, token_nll)
        for r, i in enumerate(rows):
            nll[i] = float(sums[r])
    return nll


@pytest.mark.slow  # 200 real rows scored twice
def test_token_budget_batches_equal_fixed_micro_batches_on_real_rows(tiny_checkpoint_dir, shared_dir, monkeypatch):
    """Real Dolly rows in SmolLM2's chat format (27-256 tokens) on a float32 tiny model: the same NLLs as the
    fixed micro-batches to 1e-4, from fewer forwards (short examples share bigger batches)."""
    import itertools

    from lit_gpt.data.records import iter_records
    from lit_gpt.data.tokenize import tokenize_examples
    from lit_gpt.prompts.styles import get_prompt_style
    from lit_gpt.tokenizer import Tokenizer

    checkpoint = tiny_checkpoint_dir("smollm2", block_size=256)
    tokenizer = Tokenizer(checkpoint)
    rows = [row for _, row in itertools.islice(iter_records(shared_dir / "datasets" / "dolly" / "dolly_3k.jsonl",
                                                            columns=DOLLY_COLUMNS), 60)]
    examples, _ = tokenize_examples(rows, tokenizer, get_prompt_style("smollm2"), max_seq_length=256)
    lengths = [e["input_ids"].numel() for e in examples]
    assert len(examples) > 50 and max(lengths) > 3 * min(lengths)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tokenizer.vocab_size, block_size=256)).eval()
    expected = reference_loss_in_fixed_micro_batches(model, examples, micro_batch_size=4)
    forwards = []
    forward = GPT.forward
    monkeypatch.setattr(GPT, "forward", lambda self, idx, **kw: forwards.append(idx.shape) or forward(self, idx, **kw))
    result = reference_loss(model, examples, micro_batch_size=4)
    torch.testing.assert_close(torch.tensor(result.per_example_nll), torch.tensor(expected),
                               rtol=1e-4, atol=1e-4)
    assert len(forwards) < len(examples) / 4
    assert max(rows * width for rows, width in forwards) <= 4 * (max(lengths) - 1)


def test_the_answer_tokens_logits_never_exist_at_once(monkeypatch):
    """The head runs on the answer positions in chunks (lit_gpt.fused_loss): no (answer tokens x vocab) tensor,
    which at 64 rows of 1,000 tokens and a 49k vocabulary would be 12 GB of float32; the NLLs are the plain head's."""
    monkeypatch.setattr(lit_gpt.fused_loss, "LOGITS_CHUNK_ELEMENTS", 3 * 256)
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()  # vocab 256, n_embd 32
    examples = [example(torch.randint(0, 256, (40,)).tolist(), 4) for _ in range(4)]
    with MaxAllocation() as fused:
        result = reference_loss(model, examples, micro_batch_size=4)
    answer_logits = 4 * 36 * 256  # 4 rows x 36 answer tokens x vocab
    assert fused.largest < answer_logits / 3  # the largest left: a (39 x 256) mask or weight; a chunk is 3 x 256
    with torch.no_grad(), MaxAllocation() as plain_head:  # the plain head: all answer logits at once
        x = torch.stack([e["input_ids"][:-1] for e in examples])
        logits = model(x, output_mask=(torch.arange(39) >= 3).expand(4, 39))
        plain = [float(F.cross_entropy(row_logits, e["input_ids"][4:], reduction="sum"))
                 for row_logits, e in zip(logits.view(4, 36, 256), examples)]
    assert plain_head.largest >= answer_logits
    torch.testing.assert_close(torch.tensor(result.per_example_nll), torch.tensor(plain),
                               rtol=1e-5, atol=1e-5)


def test_token_budget_batches_hold_more_short_rows_within_the_budget():
    widths = [10, 2, 5, 10, 3, 2, 1]
    batches = token_budget_batches(widths, rows_of_longest=2)  # budget 2 x 10 tokens
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert [[widths[i] for i in b] for b in batches] == [[1, 2, 2, 3], [5, 10], [10]]
    assert all(len(b) * max(widths[i] for i in b) <= 20 for b in batches)
