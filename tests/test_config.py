"""Config: the registry, name lookup, derivation from HF config.json (real files' fields and transformers 5's own
serialization), and one-line errors for unknown names and architectures."""

import json

import pytest
import torch

from helpers import ROOT
from lit_gpt.config import Config
from lit_gpt.registry import configs, name_to_config
from lit_gpt.model import GPT
from lit_gpt.utils import UserError

SUPPORTED = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma2ForCausalLM",
             "Gemma3ForCausalLM", "Phi3ForCausalLM", "GPTNeoXForCausalLM", "PhiForCausalLM", "FalconForCausalLM"}
# parameter counts the model cards / transformers report (tied embeddings counted once)
KNOWN_PARAMETERS = {
    "pythia-70m": 70_426_624,
    "pythia-1b": 1_011_781_632,
    "Llama-2-7b-hf": 6_738_415_616,
    "Mistral-7B-v0.1": 7_241_732_096,
    "tiny-llama-1.1b": 1_100_048_384,
    "SmolLM2-135M": 134_515_008,
    "Qwen2.5-0.5B": 494_032_768,
    "phi-2": 2_779_683_840,
    "falcon-7b": 6_921_720_704,
    "Meta-Llama-3-8B": 8_030_261_248,
    "Llama-3.2-1B": 1_235_814_400,
    "Qwen3-0.6B": 596_049_920,
    "Qwen3-8B": 8_190_735_360,
    "gemma-2-2b": 2_614_341_888,
    "gemma-2-9b": 9_241_705_984,
    "gemma-3-270m": 268_098_176,
    "gemma-3-1b-it": 999_885_952,
    "Phi-3-mini-4k-instruct": 3_821_079_552,
    "Mistral-7B-v0.3": 7_248_023_552,
}

# the architecture fields of real config.json files on the Hub (as transformers 4 wrote them)
REAL_HF_CONFIGS = {
    "Llama-2-7b-hf": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
                      "intermediate_size": 11008, "max_position_embeddings": 4096, "num_attention_heads": 32,
                      "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05,
                      "rope_scaling": None, "tie_word_embeddings": False, "vocab_size": 32000},
    "Mistral-7B-v0.1": {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
                        "intermediate_size": 14336, "max_position_embeddings": 32768, "num_attention_heads": 32,
                        "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
                        "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False,
                        "vocab_size": 32000},
    "Qwen2.5-0.5B": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
                     "intermediate_size": 4864, "max_position_embeddings": 32768, "num_attention_heads": 14,
                     "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
                     "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": False,
                     "tie_word_embeddings": True, "vocab_size": 151936},
    "pythia-70m": {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_act": "gelu",
                   "hidden_size": 512, "intermediate_size": 2048, "layer_norm_eps": 1e-05,
                   "max_position_embeddings": 2048, "num_attention_heads": 8, "num_hidden_layers": 6,
                   "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False,
                   "use_parallel_residual": True, "vocab_size": 50304},
    "phi-2": {"architectures": ["PhiForCausalLM"], "model_type": "phi", "hidden_act": "gelu_new", "hidden_size": 2560,
              "intermediate_size": 10240, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048,
              "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
              "partial_rotary_factor": 0.4, "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False,
              "vocab_size": 51200},
    "falcon-7b": {"architectures": ["FalconForCausalLM"], "model_type": "falcon", "alibi": False, "bias": False,
                  "hidden_size": 4544, "layer_norm_epsilon": 1e-05, "multi_query": True,
                  "new_decoder_architecture": False, "num_attention_heads": 71, "num_hidden_layers": 32,
                  "parallel_attn": True, "vocab_size": 65024},
    "Llama-3.2-1B": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "head_dim": 64, "hidden_size": 2048,
                     "intermediate_size": 8192, "max_position_embeddings": 131072, "num_attention_heads": 32,
                     "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
                     "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                      "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                     "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256},
    "Qwen3-0.6B": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False, "head_dim": 128,
                   "hidden_size": 1024, "intermediate_size": 3072, "max_position_embeddings": 40960,
                   "max_window_layers": 28, "num_attention_heads": 16, "num_hidden_layers": 28,
                   "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
                   "sliding_window": None, "tie_word_embeddings": True, "use_sliding_window": False,
                   "vocab_size": 151936},
    "gemma-2-2b": {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "attn_logit_softcapping": 50.0,
                   "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
                   "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "intermediate_size": 9216,
                   "max_position_embeddings": 8192, "num_attention_heads": 8, "num_hidden_layers": 26,
                   "num_key_value_heads": 4, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
                   "rope_theta": 10000.0, "sliding_window": 4096, "vocab_size": 256000},
    "gemma-3-270m": {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "head_dim": 256,
                     "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 640, "intermediate_size": 2048,
                     "layer_types": ["sliding_attention"] * 5 + ["full_attention"] + ["sliding_attention"] * 5
                     + ["full_attention"] + ["sliding_attention"] * 5 + ["full_attention"],
                     "max_position_embeddings": 32768, "num_attention_heads": 4, "num_hidden_layers": 18,
                     "num_key_value_heads": 1, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
                     "rope_local_base_freq": 10000.0, "rope_scaling": None, "rope_theta": 1000000.0,
                     "sliding_window": 512, "vocab_size": 262144},
    # text + vision: the text_config lists only what differs from Gemma3TextConfig's defaults
    "gemma-3-4b-it": {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                      "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                                      "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                                      "sliding_window": 1024},
                      "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}},
    "Phi-3-mini-4k-instruct": {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu",
                               "hidden_size": 3072, "intermediate_size": 8192, "max_position_embeddings": 4096,
                               "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
                               "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_scaling": None,
                               "rope_theta": 10000.0, "sliding_window": 2047, "tie_word_embeddings": False,
                               "vocab_size": 32064},
    "Mistral-7B-v0.3": {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
                        "intermediate_size": 14336, "max_position_embeddings": 32768, "num_attention_heads": 32,
                        "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
                        "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
                        "vocab_size": 32768},
}


@pytest.mark.parametrize("entry", configs, ids=[c["name"] for c in configs])
def test_every_registry_entry_builds(entry):
    config = Config(**entry)
    assert config.architecture in SUPPORTED
    assert config.hf_repo_id.endswith(config.name) or config.hf_repo_id.count("/") == 1
    assert config.n_head % config.n_query_groups == 0 and config.rope_n_elem % 2 == 0
    with torch.device("meta"):
        model = GPT(config)
    n_params = sum(p.numel() for p in model.parameters())  # a tied head is one parameter
    if config.name in KNOWN_PARAMETERS:
        assert n_params == KNOWN_PARAMETERS[config.name]


def test_lookup_by_short_name_and_repo_id():
    by_name = Config.from_name("pythia-160m")
    assert by_name == Config.from_name("EleutherAI/pythia-160m")
    assert by_name.n_layer == 12 and by_name.hf_repo_id == "EleutherAI/pythia-160m"
    assert Config.from_name("someone-else/pythia-160m").n_embd == 768  # a re-upload under another org
    assert Config.from_name("phi-2", n_layer=2).n_layer == 2
    assert len(name_to_config) == len(configs)


def test_unknown_name_is_a_user_error():
    with pytest.raises(UserError, match="unknown model name 'llama-9000'"):
        Config.from_name("llama-9000")


@pytest.mark.parametrize("name", list(REAL_HF_CONFIGS))
def test_from_hf_config_of_real_config_files_matches_the_registry(name):
    derived = Config.from_hf_config(REAL_HF_CONFIGS[name], name=name).to_dict()
    registered = Config.from_name(name).to_dict()
    assert {**derived, "hf_repo_id": registered["hf_repo_id"]} == registered


def test_from_hf_config_of_the_shared_smollm2_config(shared_dir):
    """A real config.json without `architectures` (rebuilt from GGUF metadata): model_type decides."""
    derived = Config.from_hf_config(json.loads((shared_dir / "tokenizers/smollm2/config.json").read_text()))
    registered = Config.from_name("SmolLM2-135M-Instruct")
    assert derived.norm_eps == pytest.approx(registered.norm_eps)
    assert {**derived.to_dict(), "name": registered.name, "hf_repo_id": registered.hf_repo_id,
            "norm_eps": registered.norm_eps} == registered.to_dict()


TRANSFORMERS_5_CASES = {
    # transformers class, its kwargs, the Config fields they must give
    "llama": ("LlamaConfig", dict(num_key_value_heads=2, rope_theta=5000.0, head_dim=16),
              dict(n_query_groups=2, rope_base=5000.0, head_size=16, norm_class_name="RMSNorm")),
    "mistral": ("MistralConfig", dict(num_key_value_heads=2, sliding_window=7),
                dict(n_query_groups=2, sliding_window=7, architecture="MistralForCausalLM")),
    "qwen2": ("Qwen2Config", dict(num_key_value_heads=1, tie_word_embeddings=True, rope_theta=1e6),
              dict(n_query_groups=1, attn_bias=True, tie_embeddings=True, rope_base=1e6, sliding_window=None)),
    "gpt_neox": ("GPTNeoXConfig", dict(rotary_pct=0.25, rotary_emb_base=20000, use_parallel_residual=False),
                 dict(rotary_percentage=0.25, rope_base=20000.0, parallel_residual=False, bias=True,
                      mlp_class_name="GptNeoxMLP", lm_head_bias=False)),
    "phi": ("PhiConfig", dict(partial_rotary_factor=0.4, rope_theta=3000.0),
            dict(rotary_percentage=0.4, rope_base=3000.0, shared_attention_norm=True, lm_head_bias=True,
                 gelu_approximate="tanh")),
    "falcon": ("FalconConfig", dict(rope_theta=3000.0),
               dict(n_query_groups=1, rope_base=3000.0, tie_embeddings=True, intermediate_size=256, bias=False)),
}


@pytest.mark.parametrize("family", list(TRANSFORMERS_5_CASES))
def test_from_hf_config_of_transformers_5_serialization(family):
    """transformers 5 writes rope settings into `rope_parameters`; the derivation must find them there."""
    transformers = pytest.importorskip("transformers")
    class_name, kwargs, expected = TRANSFORMERS_5_CASES[family]
    hf_config = getattr(transformers, class_name)(vocab_size=100, hidden_size=64, num_hidden_layers=3,
                                                  num_attention_heads=4, intermediate_size=128,
                                                  max_position_embeddings=512, **kwargs)
    config = Config.from_hf_config(json.loads(hf_config.to_json_string()), name="x")
    assert (config.n_layer, config.n_embd, config.n_head, config.vocab_size, config.block_size) == (3, 64, 4, 100, 512)
    assert {field: getattr(config, field) for field in expected} == expected


def test_unknown_architecture_and_scaled_rope_are_user_errors():
    with pytest.raises(UserError, match="architecture 'MambaForCausalLM' is not supported"):
        Config.from_hf_config({"architectures": ["MambaForCausalLM"]}, name="mamba")
    with pytest.raises(UserError, match="architecture '\\(none\\)' is not supported"):
        Config.from_hf_config({})
    yarn = {**REAL_HF_CONFIGS["Llama-2-7b-hf"], "rope_scaling": {"rope_type": "yarn", "factor": 8.0}}
    with pytest.raises(UserError, match="rope scaling 'yarn' is not supported"):
        Config.from_hf_config(yarn, name="yarn")
    incomplete = {**REAL_HF_CONFIGS["Llama-2-7b-hf"], "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    with pytest.raises(UserError, match="llama3 needs low_freq_factor, high_freq_factor, original_max_position"):
        Config.from_hf_config(incomplete, name="llama3")
    irregular = {**REAL_HF_CONFIGS["gemma-3-270m"], "layer_types": ["full_attention"] + ["sliding_attention"] * 17}
    with pytest.raises(UserError, match="do not repeat one windowed/global pattern"):
        Config.from_hf_config(irregular, name="gemma")
    with pytest.raises(UserError, match="only the Falcon-7B layout"):
        Config.from_hf_config({**REAL_HF_CONFIGS["falcon-7b"], "new_decoder_architecture": True})


def test_from_checkpoint_prefers_lit_config_then_registry_then_config_json(tmp_path):
    saved = tmp_path / "org" / "my-model"
    saved.mkdir(parents=True)
    Config.from_name("pythia-14m", n_layer=1).save(saved / "lit_config.json")
    assert Config.from_checkpoint(saved).n_layer == 1
    assert Config.from_checkpoint(saved, model_name="pythia-31m").n_embd == 256  # --model_name wins

    registered = tmp_path / "EleutherAI" / "pythia-70m"
    registered.mkdir(parents=True)
    assert Config.from_checkpoint(registered).name == "pythia-70m"

    fine_tune = tmp_path / "someone" / "phi-2-fine-tune"
    fine_tune.mkdir(parents=True)
    (fine_tune / "config.json").write_text(json.dumps(REAL_HF_CONFIGS["phi-2"]))
    derived = Config.from_checkpoint(fine_tune)
    assert (derived.name, derived.rotary_percentage, derived.n_layer) == ("phi-2-fine-tune", 0.4, 32)

    with pytest.raises(UserError, match="not a known model"):
        Config.from_checkpoint(tmp_path / "someone" / "empty")
    (fine_tune / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="config.json: cannot read"):
        Config.from_checkpoint(fine_tune)


def test_config_values_of_the_wrong_type_name_the_file(tmp_path):
    good = Config(name="x", block_size=16, vocab_size=32, n_layer=1, n_head=2, n_embd=8).to_dict()
    path = tmp_path / "lit_config.json"
    path.write_text(json.dumps({**good, "n_layer": "two"}))
    with pytest.raises(UserError, match=f"{path}: n_layer = 'two': must be a whole number"):
        Config.from_file(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "n_embd"}))
    with pytest.raises(UserError, match=f"{path}: n_embd missing"):
        Config.from_file(path)
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    hf = json.loads((ROOT.parent / "shared" / "tokenizers" / "smollm2" / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**hf, "hidden_size": "32"}))
    with pytest.raises(UserError, match="config.json: .*"):
        Config.from_checkpoint(hf_dir)
    with pytest.raises(UserError, match="--model_name 'no-such-model' is not a known model"):
        Config.from_checkpoint(hf_dir, model_name="no-such-model")
