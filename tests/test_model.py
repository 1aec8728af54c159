"""lit_gpt/model.py: KV-cached decoding, sliding window, output_mask, gradient checkpointing, compiled blocks, packed
rows, NEFTune.

KV-cached decoding equals full forwards and transformers' greedy generate; the output mask, gradient checkpointing and
compiled blocks (speed tricks of the training step) change no loss or gradient; an example packed into a row with
others gets the logits it gets alone, in every family; NEFTune's noise is off by default, training-only and scaled."""

import copy
import pytest
import torch

from helpers import (HF_CONFIGS, assert_grads_close_by_norm, assert_same_grads, bf16_errors, full_logits_loss, grads,
                     make_model, masked_head_loss, random_examples, random_model, tiny_config)
from lit_gpt.config import Config
from lit_gpt.convert.hf_mapping import hf_state_dict_to_lit
from lit_gpt.infer.cache import rope_refill_position
from lit_gpt.infer.sampling import generate
from lit_gpt.model import (GPT, KVCache, grouped_attention, packed_attention_mask, positions_in_segments,
                           rows_attending)
from lit_gpt.train.dataset import TrainingSet
from lit_gpt.train.packing import Packing

FAMILY_SWITCHES = {
    "llama-gqa": dict(),
    "neox-partial-rotary": dict(n_query_groups=4, rotary_percentage=0.25, parallel_residual=True, bias=True,
                                norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP"),
    "falcon-mqa": dict(n_query_groups=1, parallel_residual=True, shared_attention_norm=True,
                       norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP"),
    "mistral-window": dict(sliding_window=3),
    "gemma3-window-pattern": dict(sliding_window=3, sliding_window_pattern=2, rope_local_base=500.0, norm_qk=True,
                                  norm_unit_offset=True, post_block_norms=True, scale_embeddings=True,
                                  mlp_class_name="GemmaMLP", attention_scores_scalar=12,
                                  rope_scaling=dict(rope_type="linear", factor=4.0)),
    "gemma2-softcap": dict(sliding_window=4, sliding_window_pattern=2, attention_logit_softcapping=2.0,
                           final_logit_softcapping=5.0, norm_unit_offset=True, post_block_norms=True),
    # within the original context (crossing it switches every position's factors: a full forward then differs from
    # the cache's earlier keys, in transformers as here; test_greedy_decoding_equals_transformers_generate crosses it)
    "phi3-longrope-partial": dict(rotary_percentage=0.5, rope_scaling=dict(
        rope_type="longrope", short_factor=[1.0, 2.0], long_factor=[3.0, 5.0], original_max_position_embeddings=64)),
}


@torch.no_grad()
def greedy_full_forward(model: GPT, prompt: torch.Tensor, n: int) -> "tuple[torch.Tensor, list[torch.Tensor]]":
    """The reference: the whole sequence through the model at every step, no cache."""
    ids, step_logits = prompt, []
    for _ in range(n):
        logits = model(ids)[:, -1]
        step_logits.append(logits)
        ids = torch.cat((ids, logits.argmax(-1, keepdim=True)), dim=1)
    return ids, step_logits


@torch.no_grad()
def greedy_kv_cache(model: GPT, prompt: torch.Tensor, n: int) -> "tuple[torch.Tensor, list[torch.Tensor]]":
    """Prefill the prompt once, then one token per step at its position."""
    B, T = prompt.shape
    model.set_kv_cache(batch_size=B, max_seq_length=T + n)
    logits = model(prompt, input_pos=torch.arange(T))[:, -1]
    ids, step_logits = prompt, [logits]
    for pos in range(T, T + n):
        token = logits.argmax(-1, keepdim=True)
        ids = torch.cat((ids, token), dim=1)
        if pos == T + n - 1:
            break
        logits = model(token, input_pos=torch.tensor([pos]))[:, -1]
        step_logits.append(logits)
    model.clear_kv_cache()
    return ids, step_logits


@pytest.mark.parametrize("block", [None, 4])  # 4: the 15 positions span four blocks of the cache
@pytest.mark.parametrize("family", list(FAMILY_SWITCHES))
def test_kv_cached_greedy_equals_full_forward(family, block, monkeypatch):
    if block is not None:
        monkeypatch.setattr("lit_gpt.model.KV_CACHE_BLOCK_CPU", block)
    model = random_model(tiny_config(**FAMILY_SWITCHES[family]))
    prompt = torch.tensor([[3, 14, 15, 92, 65], [35, 89, 79, 32, 38]])
    expected_ids, expected_logits = greedy_full_forward(model, prompt, 10)
    ids, logits = greedy_kv_cache(model, prompt, 10)
    assert torch.equal(ids, expected_ids)
    for ours, reference in zip(logits, expected_logits):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama-gqa", "gemma3-window-pattern", "gemma2-softcap"])
@torch.no_grad()
def test_bf16_cached_decode_on_cpu_is_as_close_to_float32_as_the_full_forward(family, monkeypatch):
    """On CPU the cache keeps the model's dtype, in blocks (here of 4 positions), and cached steps run
    `grouped_attention` with bf16 scores: the cached decode's logits are on average as close to the float32
    computation (same bf16-rounded weights) as the bf16 full forward (SDPA)."""
    monkeypatch.setattr("lit_gpt.model.KV_CACHE_BLOCK_CPU", 4)
    model = random_model(tiny_config(**FAMILY_SWITCHES[family])).to(torch.bfloat16)
    reference_model = copy.deepcopy(model).float()
    seq = torch.tensor([[3, 14, 15, 92, 65, 35, 89, 79, 32, 38]])
    reference = reference_model(seq)[0]
    full_bf16_error = (model(seq)[0].float() - reference).abs().mean()  # bf16's own rounding, on average
    model.set_kv_cache(batch_size=1, max_seq_length=seq.shape[1])
    assert all(block.attn.kv_cache.k.dtype == torch.bfloat16 and block.attn.kv_cache.k.shape[0] == 3
               for block in model.blocks)
    steps = [model(seq[:, :5], input_pos=torch.arange(5))[0]]
    steps += [model(seq[:, t: t + 1], input_pos=torch.tensor([t]))[0] for t in range(5, seq.shape[1])]
    cached = torch.cat(steps)
    assert cached.dtype == torch.bfloat16
    assert (cached.float() - reference).abs().mean() <= 1.5 * full_bf16_error


@pytest.mark.parametrize("mask_kind", ["causal", "per-query", "per-row"])
@pytest.mark.parametrize("n_groups", [1, 3, 9])
def test_grouped_attention_equals_sdpa(n_groups, mask_kind):
    """Each key/value head read once for its group of query heads, from one tensor or from blocks of positions,
    gives SDPA's result with enable_gqa (float32)."""
    torch.manual_seed(0)
    B, n_head, T, S, hs = 2, 9, 3 if mask_kind != "causal" else 7, 7, 8
    q, k, v = torch.randn(B, n_head, T, hs), torch.randn(B, n_groups, S, hs), torch.randn(B, n_groups, S, hs)
    mask = {"causal": None, "per-query": torch.rand(T, S) < 0.7, "per-row": torch.rand(B, 1, T, S) < 0.7}[mask_kind]
    if mask is not None:
        mask[..., 0] = True  # no query without a key
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                                                scale=0.3, enable_gqa=True)
    torch.testing.assert_close(grouped_attention(q, k, v, mask, 0.3), expected, rtol=1e-5, atol=1e-5)
    blocks = lambda x: [x[:, :, :3], x[:, :, 3:6], x[:, :, 6:]]
    torch.testing.assert_close(grouped_attention(q, blocks(k), blocks(v), mask, 0.3), expected, rtol=1e-5, atol=1e-5)
    if mask is not None:  # whole blocks past the mask's positions (stale keys, even huge ones) are not attended
        stale = lambda x: blocks(x) + [torch.full((B, n_groups, 2, hs), 1e4)]
        torch.testing.assert_close(grouped_attention(q, stale(k), stale(v), mask, 0.3), expected, rtol=1e-5, atol=1e-5)


def test_blocks_are_read_only_by_the_rows_that_attend_them():
    """Blocks of 3, 3 and 2 positions; row 0 attends all 8 positions, row 1 the first 4, row 2 the first 2, row 3
    (a sliding window) positions 4-7. `rows_attending` gives each block's rows (first, last + 1), and grouped
    attention, which reads each block for those rows only, equals SDPA over all positions (float32)."""
    torch.manual_seed(0)
    B, n_head, n_groups, hs, S = 4, 6, 2, 8, 8
    q, k, v = torch.randn(B, n_head, 1, hs), torch.randn(B, n_groups, S, hs), torch.randn(B, n_groups, S, hs)
    positions = torch.arange(S)
    first, last = torch.tensor([0, 0, 0, 4]), torch.tensor([7, 3, 1, 7])
    mask = ((positions >= first[:, None]) & (positions <= last[:, None]))[:, None, None]  # (B, 1, 1, S)
    assert rows_attending(mask, B, [3, 3, 2]) == [(0, 3), (0, 4), (0, 4)]
    assert rows_attending(mask[1:3], 2, [3, 3, 2]) == [(0, 2), (0, 1), (0, 0)]  # block 2: no row attends it
    assert rows_attending(mask[3:], 1, [3, 3, 2]) == [(0, 0), (0, 1), (0, 1)]  # the window has passed block 0
    assert rows_attending(torch.arange(6)[None] < 3, 3, [3, 3]) == [(0, 3), (0, 0)]  # a (T, S) mask: rows alike
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3, enable_gqa=True)
    for rows in ([0, 1, 2], [1, 2], [3], [1, 0, 3]):
        blocks = lambda x: [x[rows][:, :, :3], x[rows][:, :, 3:6], x[rows][:, :, 6:]]
        got = grouped_attention(q[rows], blocks(k), blocks(v), mask[rows], 0.3)
        torch.testing.assert_close(got, expected[rows], rtol=1e-5, atol=1e-5)


def test_rows_attending_is_worked_out_once_per_mask():
    """Every layer of a step gets the same mask object: the first works the rows out, the others reuse them; another
    mask (even an equal one), batch or block layout is worked out anew."""
    mask = (torch.arange(8) <= torch.tensor([7, 3])[:, None])[:, None, None]  # (2, 1, 1, 8)
    first = rows_attending(mask, 2, [4, 4])
    assert first == [(0, 2), (0, 1)] and rows_attending(mask, 2, [4, 4]) is first
    assert rows_attending(mask.clone(), 2, [4, 4]) is not first
    assert rows_attending(mask, 2, [4, 2, 2]) == [(0, 2), (0, 1), (0, 1)]
    assert rows_attending(mask[:, :, :, :5], 2, [4, 4]) == [(0, 2), (0, 1)]  # narrower than the blocks


def test_kv_cache_blocks_are_contiguous_and_rows_move():
    """Each block of all rows is one contiguous tensor (what CPU matmuls read in place), returned whole; move_row
    copies a row's positions across blocks."""
    cache = KVCache(batch_size=3, n_groups=2, max_seq_length=10, head_size=4, device="cpu", dtype=torch.float32,
                    block=4)
    k = torch.randn(3, 2, 7, 4)
    keys, _ = cache(torch.arange(7), k, k.clone(), 7)
    assert [b.shape[2] for b in keys] == [4, 4] and all(b.is_contiguous() for b in keys)
    torch.testing.assert_close(torch.cat(keys, dim=2)[:, :, :7], k, rtol=0, atol=0)
    cache.move_row(2, 0, 7)
    cache.first_row = 0
    moved, _ = cache.forward(torch.tensor([7]), torch.zeros(3, 2, 1, 4), torch.zeros(3, 2, 1, 4), 7)
    torch.testing.assert_close(torch.cat(moved, dim=2)[0, :, :7], k[2], rtol=0, atol=0)


HF_GENERATE_CASES = {
    "llama": lambda t: t.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, rope_theta=5000.0,
                                     max_position_embeddings=64),
    "gpt-neox": lambda t: t.GPTNeoXConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                          num_attention_heads=4, rotary_pct=0.25, max_position_embeddings=64),
}


# from helpers.HF_CONFIGS: window 4 (Gemma) and original context 8 (Phi-3 longrope) are passed during generation
NEW_FAMILIES = ["llama3-scaled-tied", "qwen3-tied", "gemma2-softcap", "gemma3-window", "phi3-longrope"]


@pytest.mark.parametrize("family", list(HF_GENERATE_CASES) + NEW_FAMILIES)
def test_greedy_decoding_equals_transformers_generate(family):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = HF_GENERATE_CASES[family](transformers) if family in HF_GENERATE_CASES else HF_CONFIGS[family]()
    hf_model = transformers.AutoModelForCausalLM.from_config(hf_config).eval()
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            p.normal_(1.0 if p.ndim == 1 and name.endswith("weight") else 0.0, 0.2)
    config = Config.from_hf_config(hf_config.to_dict(), name=family)
    model = GPT(config).eval()
    model.load_state_dict(hf_state_dict_to_lit(hf_model.state_dict(), config))

    prompt = torch.tensor([[7, 99, 4, 23, 56, 1]]) % hf_config.vocab_size
    ids, _ = greedy_kv_cache(model, prompt, 16)
    new_ids = generate(model, prompt[0], 16, temperature=0.0)  # the library's loop (refills the cache for longrope)
    expected = hf_model.generate(prompt, max_new_tokens=16, do_sample=False, attention_mask=torch.ones_like(prompt),
                                 pad_token_id=0, eos_token_id=None)
    assert len(set(new_ids.tolist())) > 3  # not a degenerate repeat of one token
    assert torch.equal(new_ids, expected[0, 6:])
    if rope_refill_position(config) is None:
        assert torch.equal(ids, expected)


@torch.no_grad()
def test_sliding_window_attends_to_the_last_window_tokens_only():
    """One layer, so a position sees exactly its window. Rotary embeddings are relative, so the logits at position t
    equal those of the window's tokens run alone."""
    window = 4
    model = random_model(tiny_config(n_layer=1, sliding_window=window))
    unlimited = random_model(tiny_config(n_layer=1))
    idx = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))
    logits = model(idx)
    for t in range(idx.shape[1]):
        alone = model(idx[:, max(0, t - window + 1): t + 1])[:, -1]
        torch.testing.assert_close(logits[:, t], alone, atol=1e-5, rtol=1e-5)
    # the same weights without the window differ once a position has more than `window` tokens to look back on
    assert torch.allclose(unlimited(idx)[:, :window], logits[:, :window], atol=1e-5)
    assert not torch.allclose(unlimited(idx)[:, window:], logits[:, window:], atol=1e-3)


@torch.no_grad()
def test_output_mask_returns_the_selected_rows_of_the_full_logits():
    model = random_model(tiny_config())
    idx = torch.randint(0, 256, (3, 9), generator=torch.Generator().manual_seed(2))
    output_mask = torch.zeros(3, 9, dtype=torch.bool)
    output_mask[0, 4:] = True
    output_mask[2, [1, 7, 8]] = True
    selected = model(idx, output_mask=output_mask)
    assert selected.shape == (int(output_mask.sum()), 256)
    torch.testing.assert_close(selected, model(idx)[output_mask], atol=1e-6, rtol=1e-6)


def test_kv_cache_refuses_positions_past_its_length():
    model = random_model(tiny_config())
    model.set_kv_cache(batch_size=1, max_seq_length=4)
    with pytest.raises(ValueError, match="past the KV cache length"):
        model(torch.tensor([[1]]), input_pos=torch.tensor([4]))


# ---- the training step's speed tricks change no maths (float64 where the comparison should be exact) -----------------
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_output_mask_equals_full_logits(lora, tied):
    data = TrainingSet(random_examples(6), 64, "test", 256)
    input_ids, targets = data.collate(list(range(6)), torch.device("cpu"))
    model = make_model(lora=lora, tie_embeddings=tied)

    loss_masked = masked_head_loss(model, input_ids, targets)
    loss_masked.backward()
    grads_masked = grads(model)
    model.zero_grad(set_to_none=True)
    loss_full = full_logits_loss(model, input_ids, targets)
    loss_full.backward()

    torch.testing.assert_close(loss_masked, loss_full, rtol=1e-12, atol=1e-12)
    assert_same_grads(grads_masked, grads(model))


def test_output_mask_bf16_as_accurate_as_full_logits():
    """In bf16-true the masked head is as close to the float64 result as full logits + masked cross-entropy."""
    data = TrainingSet(random_examples(4), 64, "test", 256)
    input_ids, targets = data.collate(list(range(4)), torch.device("cpu"))
    errors = bf16_errors({"masked": masked_head_loss, "full": full_logits_loss}, input_ids, targets)
    for key, full_error in errors["full"].items():
        assert full_error < 0.05, key
        assert errors["masked"][key] <= 1.5 * full_error + 1e-3, (key, errors["masked"][key], full_error)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_same_loss_and_grads(lora):
    data = TrainingSet(random_examples(4), 64, "test", 256)
    input_ids, targets = data.collate(list(range(4)), torch.device("cpu"))
    results = []
    for checkpointing in (False, True):
        model = make_model(lora=lora, parallel_residual=lora)  # also the parallel-residual block layout
        model.gradient_checkpointing = checkpointing
        model.train()
        loss = masked_head_loss(model, input_ids, targets)
        loss.backward()
        results.append((loss.detach(), grads(model)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    assert_same_grads(results[0][1], results[1][1], rtol=0, atol=0)


@pytest.mark.slow
def test_compiled_blocks_same_loss_and_grads_and_names():
    """`compile_blocks()` (the loop's --compile) fuses the blocks' elementwise work with inductor: the loss and the
    gradients match eager to float32 rounding, parameter names are unchanged, and KV-cached generation (which stays
    eager) gives the same logits as the full forward."""
    torch._dynamo.reset()
    data = TrainingSet(random_examples(4), 64, "test", 256)
    input_ids, targets = data.collate(list(range(4)), torch.device("cpu"))
    results = []
    for compiled in (False, True):
        model = make_model(dtype=torch.float32, lora=True)
        names = list(model.state_dict())
        if compiled:
            model.compile_blocks()
        model.train()
        loss = model(input_ids, targets=targets)
        loss.backward()
        results.append((loss.detach(), grads(model)))
        assert list(model.state_dict()) == names
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    assert_same_grads(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)
    model.eval()
    with torch.no_grad():
        full = model(input_ids[:1, :9])
        model.set_kv_cache(1, 16)
        cached = torch.cat([model(input_ids[:1, :8], input_pos=torch.arange(8)),
                            model(input_ids[:1, 8:9], input_pos=torch.tensor([8]))], dim=1)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-5)


# ---- packed rows: each example sees what it sees alone ---------------------------------------------------------------
PACKED_ROWS = [[0, 1, 2], [3, 4]]  # the second row is shorter: right padding beside packed examples
CPU = torch.device("cpu")




def packed_batch(config: Config, seed: int = 0):
    """5 examples of 9-14 input tokens (all past phi3-longrope's original context of 8, so the long factors apply
    alone and packed alike), and their rows."""
    data = TrainingSet(random_examples(5, vocab_size=config.vocab_size, min_len=10, max_len=15, seed=seed), 64,
                       "test", config.vocab_size)
    return data, Packing.collate(data, PACKED_ROWS, CPU)


PACKING_FAMILIES = list(FAMILY_SWITCHES) + [f"hf-{name}" for name in HF_CONFIGS]


def family_model(family: str) -> GPT:
    """test_model's tiny families, and helpers.HF_CONFIGS' converted (hf-...); windows of 3-5 tokens are shorter
    than the examples."""
    if not family.startswith("hf-"):
        return random_model(tiny_config(**FAMILY_SWITCHES[family]))
    pytest.importorskip("transformers")
    name = family.removeprefix("hf-")
    return random_model(Config.from_hf_config(HF_CONFIGS[name]().to_dict(), name=name))


@pytest.mark.parametrize("family", PACKING_FAMILIES)
@torch.no_grad()
def test_packed_row_gives_each_example_its_logits_alone(family):
    model = family_model(family)
    data, (input_ids, _, segments) = packed_batch(model.config)
    packed = model(input_ids, segments=segments)
    assert not packed.isnan().any()  # padding positions attend to themselves: no NaN rows
    for r, row in enumerate(PACKED_ROWS):
        start = 0
        for i in row:
            n = data.lengths[i]
            alone = model(data.inputs[i][None])[0]
            torch.testing.assert_close(packed[r, start: start + n], alone, rtol=1e-5, atol=1e-5, msg=f"example {i}")
            start += n
    # without the segments the later examples would see the earlier ones (the test can tell the difference)
    assert not torch.allclose(model(input_ids)[0, data.lengths[0]:], packed[0, data.lengths[0]:], atol=1e-3)


@pytest.mark.parametrize("family", PACKING_FAMILIES)
def test_packed_rows_same_loss_and_grads_as_unpacked_batch(family):
    model = family_model(family).train()
    data, (input_ids, targets, segments) = packed_batch(model.config, seed=1)
    results = []
    for inputs in ((input_ids, targets, segments), (*data.collate(list(range(5)), CPU), None)):
        model.zero_grad(set_to_none=True)
        loss = model(inputs[0], targets=inputs[1], segments=inputs[2])
        loss.backward()
        results.append((loss.detach(), grads(model)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=0)
    assert_grads_close_by_norm(results[0][1], results[1][1], rel=1e-5)


def test_segment_positions_and_mask():
    segments = torch.tensor([[0, 0, 0, 1, 1, -1, -1]])
    assert positions_in_segments(segments).tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    mask = packed_attention_mask(segments, window=2)[0, 0]
    assert mask.shape == (7, 7)
    assert mask[2].tolist() == [False, True, True, False, False, False, False]  # window 2, own example
    assert mask[4].tolist() == [False, False, False, True, True, False, False]  # not example 0
    assert mask[6].tolist() == [False] * 6 + [True]  # padding: itself only
    with pytest.raises(ValueError, match="segments"):
        GPT(tiny_config())(torch.zeros(1, 3, dtype=torch.long), segments=segments[:, :3], input_pos=torch.arange(3))


@pytest.mark.slow  # torch.compile
def test_packed_rows_with_gradient_checkpointing_and_compiled_blocks():
    """The loop's memory and speed switches see packed rows' (B, 1, T, T) masks: same loss and gradients."""
    torch._dynamo.reset()
    config = tiny_config(**FAMILY_SWITCHES["gemma2-softcap"])  # windowed and global layers, softcapped attention
    data, (input_ids, targets, segments) = packed_batch(config, seed=2)
    results = []
    for switch in ("eager", "checkpointing", "compiled"):
        model = make_model(dtype=torch.float32, lora=True, **FAMILY_SWITCHES["gemma2-softcap"]).train()
        model.gradient_checkpointing = switch == "checkpointing"
        if switch == "compiled":
            model.compile_blocks()
        loss = model(input_ids, targets=targets, segments=segments)
        loss.backward()
        results.append((loss.detach(), grads(model)))
    for loss, gradients in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-6, atol=0)
        assert_grads_close_by_norm(gradients, results[0][1], rel=1e-5)


# ---- NEFTune ---------------------------------------------------------------------------------------------------------
def embeddings_seen_by_the_blocks(model: GPT, idx: torch.Tensor, **kwargs) -> torch.Tensor:
    seen = []
    handle = model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    model(idx, **kwargs)
    handle.remove()
    return seen[0]


@torch.no_grad()
def test_neftune_noise_only_in_training_scaled_and_seeded():
    model = random_model(tiny_config(n_embd=64))
    torch.manual_seed(0)
    idx = torch.randint(0, 256, (4, 50))
    clean = model.wte(idx)
    model.train()
    assert torch.equal(embeddings_seen_by_the_blocks(model, idx), clean)  # off by default, also in training
    model.neftune_noise_alpha = 5.0
    noise = embeddings_seen_by_the_blocks(model, idx) - clean
    bound = 5.0 / (50 * 64) ** 0.5  # alpha / sqrt(L d), L = the row's length
    assert 0.98 * bound < noise.abs().max() <= bound * (1 + 1e-6) and abs(float(noise.mean())) < 0.02 * bound
    torch.manual_seed(3)
    first = embeddings_seen_by_the_blocks(model, idx)
    torch.manual_seed(3)
    assert torch.equal(embeddings_seen_by_the_blocks(model, idx), first)  # from torch's seeded RNG
    assert not torch.equal(embeddings_seen_by_the_blocks(model, idx), first)
    model.eval()
    assert torch.equal(embeddings_seen_by_the_blocks(model, idx), clean)  # never in evaluation


@torch.no_grad()
def test_neftune_noise_in_packed_rows_scaled_by_each_example_length():
    model = random_model(tiny_config(n_embd=64)).train()
    model.neftune_noise_alpha = 5.0
    lengths = [100, 20, 8]  # the last one padding
    segments = torch.cat([torch.full((n,), s) for s, n in zip([0, 1, -1], lengths)])[None].repeat(32, 1)
    torch.manual_seed(0)
    idx = torch.randint(0, 256, segments.shape)
    noise = embeddings_seen_by_the_blocks(model, idx, segments=segments) - model.wte(idx)
    start = 0
    for n in lengths:
        bound = 5.0 / (n * 64) ** 0.5
        part = noise[:, start: start + n].abs().max()
        assert 0.98 * bound < part <= bound * (1 + 1e-6), (n, part, bound)
        start += n
