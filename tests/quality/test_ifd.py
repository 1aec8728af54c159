"""lit_gpt/quality/ifd.py: instruction-following difficulty against a hand computation, long pairs truncated."""

import pytest
import torch
import torch.nn.functional as F

from lit_gpt.infer.load import load
from lit_gpt.quality.ifd import IFDScorer
from lit_gpt.quality.scored_records import ScoringExample, scoring_example


@pytest.fixture(scope="module")
def gpt2_parts(tiny_checkpoint_dir):
    """A random tiny model with GPT-2's tokenizer: no BOS, alpaca prompt style (a base model)."""
    loaded = load(tiny_checkpoint_dir("gpt2", weights=True, block_size=256), device="cpu", precision="32-true")
    return loaded.model, loaded.tokenizer, loaded.style


@pytest.mark.slow
def test_ifd_matches_hand_computation(gpt2_parts, alpaca_rows):
    model, tokenizer, style = gpt2_parts
    assert style.name == "alpaca" and not tokenizer.use_bos
    scorer = IFDScorer(model, tokenizer, style)
    examples = [scoring_example(i, row) for i, row in enumerate(alpaca_rows[:5])]
    examples.append(ScoringExample(5, "Say nothing.", "", ""))
    results = scorer.score(examples)
    assert results[5] == {"score": None, "reason": "empty_response"}

    def mean_ce(ids: list[int], start: int) -> float:
        with torch.inference_mode():
            logits = model(torch.tensor([ids]))[0]
        return F.cross_entropy(logits[start - 1:-1], torch.tensor(ids[start:])).item()

    for example, result in zip(examples[:5], results):
        prompt = tokenizer.encode(style.prompt(example.instruction, example.input)).tolist()
        response = tokenizer.encode_ids(example.output)
        conditioned = mean_ce(prompt + response, len(prompt))
        alone = mean_ce([tokenizer.eos_id] + response, 1)  # GPT-2: <|endoftext|> starts a document
        assert result["loss_conditioned"] == pytest.approx(conditioned, rel=1e-4)
        assert result["loss_response"] == pytest.approx(alone, rel=1e-4)
        assert result["score"] == pytest.approx(conditioned / alone, rel=1e-4)
        assert result["truncated"] is False


def test_ifd_truncates_long_pairs(gpt2_parts):
    model, tokenizer, style = gpt2_parts
    scorer = IFDScorer(model, tokenizer, style, max_seq_length=64)
    conditioned, start, alone, truncated = scorer.sequences(ScoringExample(0, "Explain. " * 40, "", "Because. " * 80))
    assert truncated and len(conditioned) == 64 and len(alone) == 64 - start + 1
    assert tokenizer.decode(conditioned[:start]).endswith("### Response:\n")
    assert scorer.score([ScoringExample(0, "Explain. " * 40, "", "Because. " * 80)])[0]["score"] > 0
