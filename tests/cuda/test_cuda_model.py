"""The model on a CUDA GPU against the CPU: the logits of every model family (float32 tightly, bf16 within the
tolerance below), the fused LM head + loss and its gradients, batched greedy generation against one prompt at a time.

Skipped with the reason where no GPU is present; scripts/dev/gpu_check.sh runs them where one is. The measured bf16
errors are recorded as junit properties (gpu_check.json shows them). LIT_GPT_CUDA_TESTS_DEVICE=cpu rehearses this
code on a CPU (helpers.CUDA_TESTS_DEVICE)."""

import pytest
import torch

import lit_gpt.fused_loss
from helpers import (CUDA_TESTS_DEVICE as DEVICE, HF_CONFIGS, NO_CUDA, TOKENS, assert_same_grads, full_logits_loss,
                     grads, make_model, random_examples, random_model, tiny_config)
from lit_gpt.config import Config
from lit_gpt.infer.sampling import generate, generate_batch
from lit_gpt.train.dataset import TrainingSet

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")]

# bf16 keeps 8 bits of mantissa: on the CPU, the bf16 logits of these random models are off the float32 ones by up to
# 2% of the mean |logit| on average and 5% of the largest |logit| at the worst position (gemma2's soft-capping).
# CUDA's bf16 kernels accumulate in another order, so twice that is allowed; a wrong mask, rotary or cast is off by
# far more (the logits of another model).
BF16_MEAN_TOLERANCE, BF16_MAX_TOLERANCE = 0.04, 0.10


@pytest.fixture
def full_float32_matmuls():
    """Float32 matmuls without TF32: run_cli (the finetune tests call it in this process) switches TF32 on for CUDA."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


def relative_errors(ours: torch.Tensor, expected: torch.Tensor) -> "tuple[float, float]":
    """(mean |error| / mean |expected|, max |error| / max |expected|)."""
    error = (ours.float() - expected).abs()
    return (error.mean() / expected.abs().mean()).item(), (error.max() / expected.abs().max()).item()


@pytest.mark.parametrize("family", list(HF_CONFIGS))
@torch.no_grad()
def test_cuda_logits_equal_cpu_float32(family, full_float32_matmuls, record_property):
    model = random_model(Config.from_hf_config(HF_CONFIGS[family]().to_dict(), name=family))
    expected = model(TOKENS)
    model = model.to(DEVICE)
    torch.testing.assert_close(model(TOKENS.to(DEVICE)).cpu(), expected, atol=1e-4, rtol=1e-4)
    mean_error, max_error = relative_errors(model.to(torch.bfloat16)(TOKENS.to(DEVICE)).cpu(), expected)
    record_property("bf16_mean_error", round(mean_error, 4))
    record_property("bf16_max_error", round(max_error, 4))
    assert mean_error <= BF16_MEAN_TOLERANCE and max_error <= BF16_MAX_TOLERANCE, (mean_error, max_error)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_cuda_fused_head_loss_equals_full_logits(lora, full_float32_matmuls, monkeypatch):
    """Float32 on CUDA, chunks of 3 rows of logits (so the fused path spans several), against the plain
    full-logits loss in float64 on the CPU: the same loss and gradients."""
    monkeypatch.setattr(lit_gpt.fused_loss, "LOGITS_CHUNK_ELEMENTS", 3 * 256)
    data = TrainingSet(random_examples(6), 64, "test", 256)
    input_ids, targets = data.collate(list(range(6)), torch.device("cpu"))
    reference = make_model(lora=lora, tie_embeddings=True)
    expected = full_logits_loss(reference, input_ids, targets)
    expected.backward()
    model = make_model(dtype=torch.float32, lora=lora, tie_embeddings=True).to(DEVICE)
    loss = model(input_ids.to(DEVICE), targets=targets.to(DEVICE))
    loss.backward()

    torch.testing.assert_close(loss.double().cpu(), expected.detach(), rtol=1e-5, atol=1e-5)
    assert_same_grads({name: g.double().cpu() for name, g in grads(model).items()}, grads(reference),
                      rtol=1e-4, atol=1e-6)


BATCH_ARCHITECTURES = {
    "llama-gqa": {},
    "gemma3-window-pattern": dict(sliding_window=4, sliding_window_pattern=2, rope_local_base=500.0, norm_qk=True,
                                  norm_unit_offset=True, post_block_norms=True, scale_embeddings=True,
                                  mlp_class_name="GemmaMLP", attention_scores_scalar=12),
}


@pytest.mark.parametrize("arch", BATCH_ARCHITECTURES)
def test_cuda_batched_greedy_equals_one_prompt_at_a_time(arch, full_float32_matmuls, record_property):
    """Left-padded prompts of 1-12 tokens, 10 new tokens each (past the windows), float32 on CUDA: every row is
    its prompt's own greedy continuation. In bf16, how many rows still agree is recorded (rounding of batched
    matmuls may flip a near tie)."""
    model = random_model(tiny_config(**BATCH_ARCHITECTURES[arch])).to(DEVICE)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 256, (length,), generator=g).to(DEVICE) for length in (7, 1, 12, 4, 9)]
    alone = [generate(model, p, 10, temperature=0.0).tolist() for p in prompts]
    assert len({tuple(ids) for ids in alone}) == len(prompts)  # the rows differ: a mix-up of rows would show
    assert generate_batch(model, prompts, 10, temperature=0.0) == alone
    # draft tokens (prompt lookup) on CUDA: one cache block, SDPA with the (B, 1, T, S) mask; prompts that repeat
    repeated = [p.repeat(3) for p in prompts]
    alone_repeated = [generate(model, p, 10, temperature=0.0).tolist() for p in repeated]
    assert generate_batch(model, repeated, 10, batch_size=3, temperature=0.0, prompt_lookup=4) == alone_repeated

    model = model.to(torch.bfloat16)
    alone = [generate(model, p, 10, temperature=0.0).tolist() for p in prompts]
    batched = generate_batch(model, prompts, 10, temperature=0.0)
    record_property("bf16_rows_equal", f"{sum(a == b for a, b in zip(alone, batched))}/{len(prompts)}")
