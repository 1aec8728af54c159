"""The registry of named models: their architecture switches and sizes, as `Config` keyword arguments.

Plain dicts (no import of `Config`), so `lit_gpt.config` can import them; `Config.from_name` builds one. Sizes are
those of each model's published config.json. Models whose config.json carries per-checkpoint tables (Phi-3.5/4-mini's
longrope factors) are not listed: their checkpoints convert from their own config.json.
"""

# ---- entries -------------------------------------------------------------------------------------------------------
configs: list[dict] = []


def _llama(name, repo, **kw):
    configs.append(dict(name=name, hf_repo_id=repo, architecture="LlamaForCausalLM", **kw))


for chat in ("", "-chat"):
    _llama(f"Llama-2-7b{chat}-hf", f"meta-llama/Llama-2-7b{chat}-hf", block_size=4096, vocab_size=32000, n_layer=32,
           n_head=32, n_embd=4096, intermediate_size=11008)
    _llama(f"Llama-2-13b{chat}-hf", f"meta-llama/Llama-2-13b{chat}-hf", block_size=4096, vocab_size=32000, n_layer=40,
           n_head=40, n_embd=5120, intermediate_size=13824)
    _llama(f"Llama-2-70b{chat}-hf", f"meta-llama/Llama-2-70b{chat}-hf", block_size=4096, vocab_size=32000, n_layer=80,
           n_head=64, n_embd=8192, n_query_groups=8, intermediate_size=28672)

_mistral = dict(architecture="MistralForCausalLM", vocab_size=32000, n_layer=32, n_head=32, n_embd=4096,
                n_query_groups=8, intermediate_size=14336)
for name, repo in (("Mistral-7B-v0.1", "mistralai/Mistral-7B-v0.1"),
                   ("Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.1")):
    configs.append(dict(name=name, hf_repo_id=repo, block_size=32768, sliding_window=4096, **_mistral))
for name, repo in (("Mistral-7B-v0.2", "mistral-community/Mistral-7B-v0.2"),
                   ("Mistral-7B-Instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.2")):
    configs.append(dict(name=name, hf_repo_id=repo, block_size=32768, rope_base=1000000.0, **_mistral))
for name in ("Mistral-7B-v0.3", "Mistral-7B-Instruct-v0.3"):  # 768 more rows: the control tokens of v3
    configs.append(dict(name=name, hf_repo_id=f"mistralai/{name}", block_size=32768, rope_base=1000000.0,
                        **{**_mistral, "vocab_size": 32768}))

# Pythia: (name, layers, heads, width, embedding rows)
for size, n_layer, n_head, n_embd, vocab in (
    ("14m", 6, 4, 128, 50304), ("31m", 6, 8, 256, 50304), ("70m", 6, 8, 512, 50304), ("160m", 12, 12, 768, 50304),
    ("410m", 24, 16, 1024, 50304), ("1b", 16, 8, 2048, 50304), ("1.4b", 24, 16, 2048, 50304),
    ("2.8b", 32, 32, 2560, 50304), ("6.9b", 32, 32, 4096, 50432), ("12b", 36, 40, 5120, 50688),
):
    configs.append(dict(
        name=f"pythia-{size}", hf_repo_id=f"EleutherAI/pythia-{size}", architecture="GPTNeoXForCausalLM",
        block_size=2048, vocab_size=vocab, n_layer=n_layer, n_head=n_head, n_embd=n_embd, rotary_percentage=0.25,
        parallel_residual=True, bias=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP",
        intermediate_size=4 * n_embd,
    ))

_phi = dict(architecture="PhiForCausalLM", block_size=2048, vocab_size=51200, parallel_residual=True,
            shared_attention_norm=True, bias=True, lm_head_bias=True, norm_class_name="LayerNorm",
            mlp_class_name="GptNeoxMLP", gelu_approximate="tanh")
configs.append(dict(name="phi-2", hf_repo_id="microsoft/phi-2", n_layer=32, n_head=32, n_embd=2560,
                    rotary_percentage=0.4, intermediate_size=10240, **_phi))
configs.append(dict(name="phi-1_5", hf_repo_id="microsoft/phi-1_5", n_layer=24, n_head=32, n_embd=2048,
                    rotary_percentage=0.5, intermediate_size=8192, **_phi))

for name, repo in (("tiny-llama-1.1b", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"),
                   ("tiny-llama-1.1b-chat", "TinyLlama/TinyLlama-1.1B-Chat-v1.0")):
    _llama(name, repo, block_size=2048, vocab_size=32000, n_layer=22, n_head=32, n_embd=2048, n_query_groups=4,
           intermediate_size=5632)

for instruct in ("", "-Instruct"):
    _llama(f"SmolLM2-135M{instruct}", f"HuggingFaceTB/SmolLM2-135M{instruct}", block_size=8192, vocab_size=49152,
           n_layer=30, n_head=9, n_embd=576, n_query_groups=3, intermediate_size=1536, rope_base=100000.0,
           tie_embeddings=True)
    _llama(f"SmolLM2-360M{instruct}", f"HuggingFaceTB/SmolLM2-360M{instruct}", block_size=8192, vocab_size=49152,
           n_layer=32, n_head=15, n_embd=960, n_query_groups=5, intermediate_size=2560, rope_base=100000.0,
           tie_embeddings=True)
    _llama(f"SmolLM2-1.7B{instruct}", f"HuggingFaceTB/SmolLM2-1.7B{instruct}", block_size=8192, vocab_size=49152,
           n_layer=24, n_head=32, n_embd=2048, n_query_groups=32, intermediate_size=8192, rope_base=130000.0,
           tie_embeddings=True)

_qwen = dict(architecture="Qwen2ForCausalLM", block_size=32768, vocab_size=151936, rope_base=1000000.0,
             attn_bias=True, norm_eps=1e-6, tie_embeddings=True)
for instruct in ("", "-Instruct"):
    configs.append(dict(name=f"Qwen2.5-0.5B{instruct}", hf_repo_id=f"Qwen/Qwen2.5-0.5B{instruct}", n_layer=24,
                        n_head=14, n_embd=896, n_query_groups=2, intermediate_size=4864, **_qwen))
    configs.append(dict(name=f"Qwen2.5-1.5B{instruct}", hf_repo_id=f"Qwen/Qwen2.5-1.5B{instruct}", n_layer=28,
                        n_head=12, n_embd=1536, n_query_groups=2, intermediate_size=8960, **_qwen))

configs.append(dict(
    name="falcon-7b", hf_repo_id="tiiuae/falcon-7b", architecture="FalconForCausalLM", block_size=2048,
    vocab_size=65024, n_layer=32, n_head=71, n_embd=4544, n_query_groups=1, parallel_residual=True,
    shared_attention_norm=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", intermediate_size=18176,
    tie_embeddings=True,  # FalconForCausalLM ties lm_head to the word embeddings
))

# Llama 3: 128k-vocabulary BPE, rope base 500k; 3.1+ stretch the rotary frequencies to 128k positions ("llama3")
_llama3 = dict(vocab_size=128256, n_query_groups=8, rope_base=500000.0)


def _llama3_scaling(factor: float) -> dict:
    return dict(rope_type="llama3", factor=factor, low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=8192)


for instruct in ("", "-Instruct"):
    _llama(f"Meta-Llama-3-8B{instruct}", f"meta-llama/Meta-Llama-3-8B{instruct}", block_size=8192, n_layer=32,
           n_head=32, n_embd=4096, intermediate_size=14336, **_llama3)
    _llama(f"Meta-Llama-3-70B{instruct}", f"meta-llama/Meta-Llama-3-70B{instruct}", block_size=8192, n_layer=80,
           n_head=64, n_embd=8192, intermediate_size=28672, **_llama3)
    _llama(f"Llama-3.1-8B{instruct}", f"meta-llama/Llama-3.1-8B{instruct}", block_size=131072, n_layer=32,
           n_head=32, n_embd=4096, intermediate_size=14336, rope_scaling=_llama3_scaling(8.0), **_llama3)
    _llama(f"Llama-3.1-70B{instruct}", f"meta-llama/Llama-3.1-70B{instruct}", block_size=131072, n_layer=80,
           n_head=64, n_embd=8192, intermediate_size=28672, rope_scaling=_llama3_scaling(8.0), **_llama3)
    _llama(f"Llama-3.2-1B{instruct}", f"meta-llama/Llama-3.2-1B{instruct}", block_size=131072, n_layer=16,
           n_head=32, n_embd=2048, intermediate_size=8192, head_size=64, tie_embeddings=True,
           rope_scaling=_llama3_scaling(32.0), **_llama3)
    _llama(f"Llama-3.2-3B{instruct}", f"meta-llama/Llama-3.2-3B{instruct}", block_size=131072, n_layer=28,
           n_head=24, n_embd=3072, intermediate_size=8192, head_size=128, tie_embeddings=True,
           rope_scaling=_llama3_scaling(32.0), **_llama3)
_llama("Llama-3.3-70B-Instruct", "meta-llama/Llama-3.3-70B-Instruct", block_size=131072, n_layer=80, n_head=64,
       n_embd=8192, intermediate_size=28672, rope_scaling=_llama3_scaling(8.0), **_llama3)

# Qwen3 (dense): per-head RMSNorm on queries and keys, no q/k/v bias, head size 128 whatever the width. "Qwen3-0.6B"
# is the post-trained (chat) model, "-Base" the pretrained one.
_qwen3 = dict(architecture="Qwen3ForCausalLM", vocab_size=151936, rope_base=1000000.0, norm_eps=1e-6, head_size=128,
              n_query_groups=8, norm_qk=True)
for size, n_layer, n_head, n_embd, ffn, tied in (("0.6B", 28, 16, 1024, 3072, True), ("1.7B", 28, 16, 2048, 6144, True),
                                                  ("4B", 36, 32, 2560, 9728, True), ("8B", 36, 32, 4096, 12288, False)):
    for suffix, block_size in (("-Base", 32768), ("", 40960)):
        configs.append(dict(name=f"Qwen3-{size}{suffix}", hf_repo_id=f"Qwen/Qwen3-{size}{suffix}", n_layer=n_layer,
                            n_head=n_head, n_embd=n_embd, intermediate_size=ffn, tie_embeddings=tied,
                            block_size=block_size, **_qwen3))

# Gemma 2: GeGLU, (1 + weight) RMSNorms before and after attention and MLP, embeddings times sqrt(width),
# alternating 4096-token windowed and global layers, soft-capped attention scores and logits
_gemma2 = dict(architecture="Gemma2ForCausalLM", block_size=8192, vocab_size=256000, norm_eps=1e-6, head_size=256,
               mlp_class_name="GemmaMLP", norm_unit_offset=True, post_block_norms=True, scale_embeddings=True,
               sliding_window=4096, sliding_window_pattern=2, attention_logit_softcapping=50.0,
               final_logit_softcapping=30.0, tie_embeddings=True)
for size, n_layer, n_head, n_embd, groups, ffn, head_size, scalar in (
        ("2b", 26, 8, 2304, 4, 9216, 256, 256), ("9b", 42, 16, 3584, 8, 14336, 256, 256),
        ("27b", 46, 32, 4608, 16, 36864, 128, 144)):
    for instruct in ("", "-it"):
        configs.append(dict(name=f"gemma-2-{size}{instruct}", hf_repo_id=f"google/gemma-2-{size}{instruct}",
                            n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_query_groups=groups,
                            intermediate_size=ffn, attention_scores_scalar=scalar, **{**_gemma2, "head_size": head_size}))

# Gemma 3 (text): Gemma 2's layout with q/k norms instead of soft-capping; five windowed layers (rope base 10k) per
# global one (rope base 1M, stretched 8x from 4B up). 4B+ ship as Gemma3ForConditionalGeneration (text + vision):
# the text part converts (as a Gemma3ForCausalLM); their vocabulary has 64 more rows (image tokens).
_gemma3 = dict(architecture="Gemma3ForCausalLM", vocab_size=262144, norm_eps=1e-6, mlp_class_name="GemmaMLP",
               norm_unit_offset=True, post_block_norms=True, scale_embeddings=True, norm_qk=True,
               sliding_window_pattern=6, rope_base=1000000.0, rope_local_base=10000.0, tie_embeddings=True)
for size, n_layer, n_head, n_embd, groups, ffn, head_size, scalar, window, block_size in (
        ("270m", 18, 4, 640, 1, 2048, 256, 256, 512, 32768), ("1b", 26, 4, 1152, 1, 6912, 256, 256, 512, 32768),
        ("4b", 34, 8, 2560, 4, 10240, 256, 256, 1024, 131072), ("12b", 48, 16, 3840, 8, 15360, 256, 256, 1024, 131072),
        ("27b", 62, 32, 5376, 16, 21504, 128, 168, 1024, 131072)):
    big = block_size > 32768
    for suffix in ("" if size == "270m" else "-pt", "-it"):  # the base models are "-pt" but for the 270M one
        configs.append(dict(
            name=f"gemma-3-{size}{suffix}", hf_repo_id=f"google/gemma-3-{size}{suffix}",
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_query_groups=groups, intermediate_size=ffn,
            attention_scores_scalar=scalar, sliding_window=window, block_size=block_size,
            rope_scaling=dict(rope_type="linear", factor=8.0) if big else None,
            **{**_gemma3, "head_size": head_size, "vocab_size": 262208 if big else 262144}))

# Phi-3-mini-4k: Llama-like, HF fuses q/k/v and gate/up (split on conversion); every layer windowed at 2047
configs.append(dict(name="Phi-3-mini-4k-instruct", hf_repo_id="microsoft/Phi-3-mini-4k-instruct",
                    architecture="Phi3ForCausalLM", block_size=4096, vocab_size=32064, n_layer=32, n_head=32,
                    n_embd=3072, intermediate_size=8192, sliding_window=2047))

name_to_config = {c["name"]: c for c in configs}
repo_to_config = {c["hf_repo_id"]: c for c in configs}
