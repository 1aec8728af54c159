"""lit_gpt/infer/sampling.py: KV-cached generation vs full forwards, the samplers, the text streamers."""

import io

import pytest
import torch

from helpers import tiny_config
from lit_gpt.infer.sampling import TextStreamer, generate, generate_batch, sample, top_p_filter
from lit_gpt.model import GPT
from lit_gpt.utils import UserError


ARCHITECTURES = {
    "llama-gqa": {},
    "neox-parallel-partial-rope": dict(mlp_class_name="GptNeoxMLP", norm_class_name="LayerNorm",
                                       parallel_residual=True, rotary_percentage=0.25, bias=True, n_query_groups=4),
    "sliding-window": dict(sliding_window=6),  # prompt + generation run past the window
}


def tiny_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    model = GPT(tiny_config(**overrides)).double().eval()  # float64: the KV-cached and full paths agree to ~1e-15
    with torch.no_grad():  # spread the logits so that argmax is decisive
        model.lm_head.weight.normal_(0.0, 1.0)
    return model


def greedy_by_full_forwards(model: GPT, prompt: torch.Tensor, n: int) -> list[int]:
    ids = prompt.clone()
    with torch.no_grad():
        for _ in range(n):
            next_id = model(ids[None])[0, -1].argmax()
            ids = torch.cat([ids, next_id[None]])
    return ids[len(prompt):].tolist()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_greedy_kv_cached_equals_full_forwards(arch):
    model = tiny_model(**ARCHITECTURES[arch])
    prompt = torch.randint(0, model.config.vocab_size, (5,))
    streamed = []
    out = generate(model, prompt, 12, temperature=0.0, stream=streamed.append)
    expected = greedy_by_full_forwards(model, prompt, 12)
    assert out.tolist() == expected
    assert streamed == expected
    assert all(block.attn.kv_cache is None for block in model.blocks)  # the cache is freed afterwards


def test_eos_stops_generation():
    model = tiny_model()
    prompt = torch.tensor([3, 1, 4, 1, 5])
    full = greedy_by_full_forwards(model, prompt, 10)
    eos = full[4]
    stop_at = full.index(eos)  # the first time the EOS token would be produced
    out = generate(model, prompt, 10, temperature=0.0, eos_id=eos)
    assert out.tolist() == full[:stop_at]  # EOS itself is not returned
    out = generate(model, prompt, 10, temperature=0.0, eos_id=[10**6, eos])  # a list of stop ids
    assert out.tolist() == full[:stop_at]
    assert generate(model, prompt, 10, temperature=0.0, eos_id=full[0]).numel() == 0


def test_top_k_1_equals_greedy():
    model = tiny_model()
    prompt = torch.tensor([7, 8, 9])
    greedy = generate(model, prompt, 8, temperature=0.0)
    torch.manual_seed(123)
    assert torch.equal(generate(model, prompt, 8, temperature=1.0, top_k=1), greedy)
    logits = torch.randn(3, 50)
    assert torch.equal(sample(logits, temperature=0.7, top_k=1), logits.argmax(-1, keepdim=True))


def test_greedy_picks_in_the_logits_dtype_without_a_float32_copy(monkeypatch):
    logits = torch.randn(2, 3, 50).to(torch.bfloat16)
    logits[0, 0, [4, 9]] = logits[0, 0].max() + 1  # a tie: the first of the two, as float32's argmax picks
    floats = []
    monkeypatch.setattr(torch.Tensor, "float", lambda self: floats.append(self) or self.to(torch.float32))
    picked = sample(logits, temperature=0.0)
    assert not floats and picked.dtype == torch.long
    assert torch.equal(picked, logits.to(torch.float32).argmax(-1, keepdim=True)) and picked[0, 0, 0] == 4
    sample(logits, temperature=0.7, top_k=5)
    assert len(floats) == 1  # sampling still draws from float32 probabilities


def test_top_k_samples_only_the_k_most_likely():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.9, -1.0, 2.8])
    generator = torch.Generator().manual_seed(0)
    drawn = {int(sample(logits, top_k=3, generator=generator)) for _ in range(500)}
    assert drawn == {1, 3, 5}


def test_top_p_samples_only_the_nucleus():
    # probabilities 0.05, 0.5, 0.15, 0.3 (shuffled so that the sort/scatter back is exercised)
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3], dtype=torch.float64)
    logits = probs.log()
    nuclei = {0.3: {1}, 0.5: {1}, 0.7: {1, 3}, 0.79: {1, 3}, 0.81: {1, 2, 3}, 0.96: {0, 1, 2, 3}, 1.0: {0, 1, 2, 3}}
    for top_p, nucleus in nuclei.items():
        kept = set(torch.isfinite(top_p_filter(logits, top_p)).nonzero().flatten().tolist())
        assert kept == nucleus, top_p
    generator = torch.Generator().manual_seed(0)
    drawn = [int(sample(logits, top_p=0.7, generator=generator)) for _ in range(2000)]
    assert set(drawn) == {1, 3}
    share_of_1 = drawn.count(1) / len(drawn)
    assert abs(share_of_1 - 0.5 / 0.8) < 0.05  # renormalized within the nucleus
    batch = torch.stack([logits, logits.flip(0)])
    assert torch.isfinite(top_p_filter(batch, 0.7)).tolist() == [[False, True, False, True], [True, False, True, False]]


def test_seeded_sampling_is_reproducible():
    model = tiny_model()
    prompt = torch.tensor([1, 2, 3])
    runs = []
    for seed in (42, 42, 7):
        torch.manual_seed(seed)
        runs.append(generate(model, prompt, 10, temperature=1.0, top_k=50, top_p=0.95).tolist())
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    with_generator = [generate(model, prompt, 10, temperature=1.0, generator=torch.Generator().manual_seed(3)).tolist()
                      for _ in range(2)]
    assert with_generator[0] == with_generator[1]


def test_generate_rejects_prompt_past_context_and_foreign_token_ids():
    model = tiny_model(block_size=16)
    with pytest.raises(UserError, match="exceeds the model's context of 16 tokens"):
        generate(model, torch.zeros(10, dtype=torch.long), 7)
    with pytest.raises(UserError, match="tokenizer files do not belong"):
        generate(model, torch.tensor([1, model.config.vocab_size]), 2)


@pytest.mark.parametrize("tokenizer_name", ["gpt2", "llama-2"])  # byte-level BPE, SentencePiece with byte fallback
def test_text_streamer_prints_only_complete_utf8(shared_dir, tokenizer_name):
    from lit_gpt.tokenizer import Tokenizer

    tokenizer = Tokenizer(shared_dir / "tokenizers" / tokenizer_name)
    text = "Llamas 🦙 eat grass, café and 世界."
    ids = tokenizer.encode(text, bos=False).tolist()
    assert len(ids) > len(text.split())  # the emoji and CJK characters are split over several byte tokens

    class Recorder(io.StringIO):
        writes: list = []

        def write(self, s):
            self.writes.append(s)
            return super().write(s)

    out = Recorder()
    streamer = TextStreamer(tokenizer, file=out)
    for i in ids:
        streamer(i)
    assert streamer.end() == text
    assert out.getvalue() == text
    assert all("\ufffd" not in w for w in out.writes)
    assert len(out.writes) > 5  # printed while streaming, not all at the end


def test_stop_string_ends_the_answer_and_is_never_printed():
    """Alpaca-style models go on with "### Instruction:"; text that may start a stop string is held back."""
    import lit_gpt.infer.sampling as inference

    class PieceTokenizer:  # token id i decodes to pieces[i]
        pieces = ["Paris", " is", " ###", " Instr", "uction:", " more"]

        def decode(self, ids):
            return "".join(self.pieces[i] for i in ids)

    out = io.StringIO()
    streamer = inference.StopStringStreamer(PieceTokenizer(), ["### Instruction:"], file=out)
    streamer.put(0)
    streamer.put(1)
    streamer.put(2)
    assert out.getvalue() == "Paris is "  # "###" could start the stop string
    streamer.put(3)
    with pytest.raises(inference._StopStringReached):
        streamer.put(4)
    assert streamer.end() == out.getvalue() == "Paris is "
    held = io.StringIO()
    streamer = inference.StopStringStreamer(PieceTokenizer(), ["### Instruction:"], file=held)
    for i in (0, 2, 3):
        streamer.put(i)
    assert held.getvalue() == "Paris " and streamer.end() == held.getvalue() == "Paris ### Instr"  # no stop: all


# ---- batched generation --------------------------------------------------------------------------------------------
BATCH_ARCHITECTURES = {
    **ARCHITECTURES,
    "gemma3-window-pattern": dict(sliding_window=4, sliding_window_pattern=2, rope_local_base=500.0, norm_qk=True,
                                  norm_unit_offset=True, post_block_norms=True, scale_embeddings=True,
                                  mlp_class_name="GemmaMLP", attention_scores_scalar=12),
    "gemma2-softcap": dict(sliding_window=5, sliding_window_pattern=2, attention_logit_softcapping=2.0,
                           final_logit_softcapping=8.0),
}


def mixed_prompts(n: int = 5, vocab: int = 256) -> "list[torch.Tensor]":
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, vocab, (length,), generator=g) for length in (7, 1, 12, 4, 9)[:n]]


@pytest.mark.parametrize("arch", BATCH_ARCHITECTURES)
def test_batched_greedy_equals_one_prompt_at_a_time(arch):
    """Left-padded prompts of 1-12 tokens, 10 new tokens each (past the windows): every row is the prompt's own."""
    model = tiny_model(**BATCH_ARCHITECTURES[arch])
    prompts = mixed_prompts()
    expected = [generate(model, p, 10, temperature=0.0).tolist() for p in prompts]
    assert len({tuple(e) for e in expected}) == len(prompts)  # the rows differ: a mix-up of rows would show
    assert generate_batch(model, prompts, 10, temperature=0.0) == expected


def test_rows_that_stop_early_leave_the_batch_and_the_others_go_on():
    model = tiny_model()
    prompts = mixed_prompts()
    alone = [generate(model, p, 10, temperature=0.0).tolist() for p in prompts]
    eos = alone[0][2]  # row 0 stops at its third token; others stop where they produce it too
    expected = [ids[:ids.index(eos)] if eos in ids else ids for ids in alone]
    assert len(expected[0]) == 2 and any(len(e) == 10 for e in expected)
    streamed = []
    got = generate_batch(model, prompts, 10, temperature=0.0, eos_id=[eos],
                         stream=lambda row, token: streamed.append((row, token)))
    assert got == expected
    assert [t for r, t in streamed if r == 3] == expected[3]
    # a stop rule (what stop strings use): row 2 stops after 3 tokens
    got = generate_batch(model, prompts, 10, temperature=0.0, stop=lambda row, ids: row == 2 and len(ids) == 3)
    assert got[2] == alone[2][:3] and got[4] == alone[4]


def test_batched_sampling_is_reproducible_with_a_seed():
    model = tiny_model()
    prompts = mixed_prompts(3)
    runs = [generate_batch(model, prompts, 8, temperature=1.0, top_k=20,
                           generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert runs[0] == runs[1] and runs[0] != generate_batch(model, prompts, 8, temperature=0.0)


# ---- continuous batching: fewer rows than prompts --------------------------------------------------------------------
LONGROPE = dict(block_size=40, rope_scaling={"rope_type": "longrope", "original_max_position_embeddings": 8,
                                             "short_factor": [1.0, 1.5, 2.0, 3.0],
                                             "long_factor": [2.0, 4.0, 8.0, 16.0]})


def early_stops(model: GPT, prompts: list, n: int) -> "tuple[int, list]":
    """An EOS id that ends some prompts' greedy answers early (one at its very first token) and leaves others to the
    budget, and those answers, each prompt alone."""
    alone = [generate(model, p, n, temperature=0.0).tolist() for p in prompts]
    eos = alone[0][2]
    expected = [ids[:ids.index(eos)] if eos in ids else ids for ids in alone]
    assert min(len(e) for e in expected) < 3 and max(len(e) for e in expected) == n
    return eos, expected


@pytest.mark.parametrize("block", [None, 4], ids=["one-block", "blocks-of-4"])
@pytest.mark.parametrize("arch", [*BATCH_ARCHITECTURES, "phi3-longrope"])
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_continuous_batching_greedy_equals_one_prompt_at_a_time(arch, batch_size, block, monkeypatch):
    """Seven prompts of 1-12 tokens through 1-3 rows: rows end early (EOS, a stop rule, a smaller budget), the rows
    behind them move up and the next prompt joins at the end; each answer is its prompt's own, in input order.
    Longrope rows cross the factor switch (position 8) at different steps, each recomputing its own cache. With
    cache blocks of 4 positions rows grow into new blocks at different steps and are reordered (swapped), and a
    long prompt joins behind shorter rows."""
    if block is not None:
        monkeypatch.setattr("lit_gpt.model.KV_CACHE_BLOCK_CPU", block)
    model = tiny_model(**(LONGROPE if arch == "phi3-longrope" else BATCH_ARCHITECTURES[arch]))
    g = torch.Generator().manual_seed(4)
    prompts = mixed_prompts() + [torch.randint(0, 256, (n,), generator=g) for n in (3, 10)]
    eos, expected = early_stops(model, prompts, 10)
    budgets = [10, 10, 10, 4, 10, 10, 10]
    expected[3] = expected[3][:4]
    expected[5] = expected[5][:5]  # the stop rule ends prompt 5 after five tokens
    done = []
    got = generate_batch(model, prompts, budgets, batch_size=batch_size, temperature=0.0, eos_id=eos,
                         stop=lambda i, ids: i == 5 and len(ids) == 5, done=done.append)
    assert got == expected
    assert sorted(done) == list(range(len(prompts)))


def test_rows_are_never_idle_while_prompts_wait(monkeypatch):
    """Two rows, one long answer (of the longest prompt: it starts first) and five short ones: the short ones pass
    through the other row while the long one runs, so every decode step runs both rows until the pool is empty, and
    the steps are those of the long answer."""
    from lit_gpt.infer.cache import RowCache

    model = tiny_model()
    prompts = mixed_prompts() + [torch.tensor([5, 6])]
    budgets = [2, 2, 12, 2, 2, 2]
    rows_per_step = []
    step = RowCache.step
    monkeypatch.setattr(RowCache, "step", lambda self, drafts: rows_per_step.append(self.active) or step(self, drafts))
    got = generate_batch(model, prompts, budgets, batch_size=2, temperature=0.0)
    assert [len(ids) for ids in got] == budgets
    assert len(rows_per_step) == 11  # the long answer's 12 tokens: 1 from its prefill, 11 decode steps
    assert rows_per_step[:5] == [2] * 5 and set(rows_per_step[5:]) == {1}


def test_continuous_batching_sampling_is_reproducible_for_a_batch_composition():
    model = tiny_model()
    prompts = mixed_prompts()

    def run(seed: int, batch_size: int) -> list:
        return generate_batch(model, prompts, 8, batch_size=batch_size, temperature=1.0, top_k=20,
                              generator=torch.Generator().manual_seed(seed))

    assert run(5, 2) == run(5, 2) != run(6, 2)
    assert all(len(ids) == 8 for ids in run(5, 2))


@pytest.mark.parametrize("block", [None, 4], ids=["one-block", "blocks-of-4"])
@pytest.mark.parametrize("arch", BATCH_ARCHITECTURES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_prompt_lookup_keeps_the_greedy_answers(arch, batch_size, block, monkeypatch):
    """Draft tokens copied from earlier in each sequence, fed with the row's token and kept as far as greedy decoding
    confirms them: the answers are those of one token per step (rows ending at EOS, a stop rule or a smaller budget
    inside a draft included), and the steps are fewer. Prompts with repeats, so drafts exist from the start."""
    if block is not None:
        monkeypatch.setattr("lit_gpt.model.KV_CACHE_BLOCK_CPU", block)
    model = tiny_model(**BATCH_ARCHITECTURES[arch])
    g = torch.Generator().manual_seed(6)
    prompts = [torch.randint(0, 256, (n,), generator=g).repeat(3) for n in (2, 4, 1, 3, 5)] + mixed_prompts(2)
    eos, expected = early_stops(model, prompts, 16)
    budgets = [16, 16, 16, 6, 16, 16, 16]
    expected[3] = expected[3][:6]
    expected[4] = expected[4][:7]  # the stop rule ends prompt 4 after seven tokens
    from lit_gpt.infer.cache import RowCache

    steps, step = [], RowCache.step
    monkeypatch.setattr(RowCache, "step", lambda self, drafts: steps.append(self.active) or step(self, drafts))

    def run(lookup: int) -> list:
        return generate_batch(model, prompts, budgets, batch_size=batch_size, temperature=0.0, eos_id=eos,
                              stop=lambda i, ids: i == 4 and len(ids) == 7, prompt_lookup=lookup)

    assert run(0) == expected
    plain_steps = len(steps)
    assert run(4) == expected
    assert len(steps) - plain_steps < plain_steps  # drafts were kept: fewer steps


def test_a_step_with_drafts_runs_at_most_the_cpu_positions(monkeypatch):
    """On CPU rows x T of a step stays within DRAFT_POSITIONS_CPU (here 4): three rows take no drafts, two rows at
    most one draft token each, one row at most three; the answers stay the greedy ones."""
    from lit_gpt.infer.cache import RowCache

    monkeypatch.setattr("lit_gpt.infer.cache.DRAFT_POSITIONS_CPU", 4)
    model = tiny_model()
    prompts = [p.repeat(3) for p in mixed_prompts(3)]
    budgets = [4, 10, 16]
    expected = generate_batch(model, prompts, budgets, batch_size=3, temperature=0.0)
    shapes, step = [], RowCache.step
    monkeypatch.setattr(RowCache, "step", lambda self, drafts: shapes.append(step(self, drafts).shape[:2]) or
                        step(self, drafts))
    assert generate_batch(model, prompts, budgets, batch_size=3, temperature=0.0, prompt_lookup=4) == expected
    assert {T for rows, T in shapes if rows == 3} == {1} and all(rows * T <= 4 for rows, T in shapes)
    assert max(T for rows, T in shapes) > 1  # drafts ran where the rows left room


def test_a_compiled_step_takes_no_drafts(monkeypatch):
    """compile=True: the decode step runs one token per row (drafts would bring new step shapes to recompile)."""
    from lit_gpt.infer.cache import RowCache

    lookaheads, init = [], RowCache.__init__
    monkeypatch.setattr(RowCache, "__init__", lambda self, *a, lookahead: lookaheads.append(lookahead) or
                        init(self, *a[:4], False, lookahead=lookahead))  # compile asked for, eager run
    model = tiny_model()
    prompts = [p.repeat(2) for p in mixed_prompts(2)]
    expected = generate_batch(model, prompts, 6, temperature=0.0)
    assert generate_batch(model, prompts, 6, temperature=0.0, prompt_lookup=4, compile=True) == expected
    assert generate_batch(model, prompts, 6, temperature=0.0, prompt_lookup=4) == expected
    assert lookaheads == [0, 0, 4]


def test_prompt_lookup_is_for_greedy_decoding_only():
    """With sampling the drafts are not used (a sampled token is not confirmed by a draft's logits alone): the
    answers are those without prompt_lookup, draw for draw."""
    model = tiny_model()
    prompts = [p.repeat(2) for p in mixed_prompts(3)]

    def run(lookup: int) -> list:
        return generate_batch(model, prompts, 8, temperature=1.0, generator=torch.Generator().manual_seed(5),
                              prompt_lookup=lookup)

    assert run(4) == run(0)


@pytest.mark.slow  # torch.compile
def test_compiled_decode_step_gives_the_same_greedy_answers():
    """torch.compile of the decode step (dynamic shapes: rows and key lengths change every step)."""
    model = tiny_model(n_layer=1)
    prompts = mixed_prompts()
    eos, expected = early_stops(model, prompts, 6)
    assert generate_batch(model, prompts, 6, batch_size=2, temperature=0.0, eos_id=eos, compile=True) == expected


def test_batched_greedy_equals_one_at_a_time_on_the_real_smollm2(packaged_smollm2_dir):
    """The packaged SmolLM2-135M-Instruct in float32 (converted once per session, conftest.py): five real chat
    prompts of different lengths."""
    from lit_gpt.checkpoint import load_model
    from lit_gpt.data.tokenize import encode_prompt
    from lit_gpt.prompts.styles import get_prompt_style
    from lit_gpt.tokenizer import Tokenizer

    checkpoint_dir = packaged_smollm2_dir
    model, tokenizer = load_model(checkpoint_dir).eval(), Tokenizer(checkpoint_dir)
    questions = ["What is the capital of France?", "Say hi.", "Explain photosynthesis in one sentence.",
                 "List the planets of the solar system in order from the sun.", "Who wrote Hamlet?"]
    style = get_prompt_style("smollm2")
    prompts = [encode_prompt(tokenizer, style, q) for q in questions]
    assert len({p.numel() for p in prompts}) == 5
    alone = [generate(model, p, 16, temperature=0.0, eos_id=tokenizer.stop_ids).tolist() for p in prompts]
    assert generate_batch(model, prompts, 16, temperature=0.0, eos_id=tokenizer.stop_ids) == alone
    assert "Paris" in tokenizer.decode(alone[0])
    # continuous batching, two rows: the answers that end at EOS (before 16 tokens) make room for the next prompt
    assert any(len(ids) < 16 for ids in alone) and any(len(ids) == 16 for ids in alone)
    assert generate_batch(model, prompts, 16, batch_size=2, temperature=0.0, eos_id=tokenizer.stop_ids) == alone
    # with draft tokens copied from the prompts (prompt lookup): the same answers
    assert generate_batch(model, prompts, 16, batch_size=2, temperature=0.0, eos_id=tokenizer.stop_ids,
                          prompt_lookup=4) == alone
