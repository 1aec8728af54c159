"""lit_gpt/registry.py: the table of named models. Its indexes, that its entries are `Config` keyword arguments, that
each chat model is its base model's architecture, and the sizes that differ from the family's pattern. That every
entry builds a model of its published parameter count: test_config.py."""

import re
from dataclasses import fields

import pytest

from lit_gpt.config import Config
from lit_gpt.registry import configs, name_to_config, repo_to_config

CHAT = re.compile(r"instruct|chat|-it$|^Qwen3-[\d.]+B$", flags=re.IGNORECASE)  # Qwen3's chat models carry no suffix
WITHOUT_BASE = {"Llama-3.3-70B-Instruct", "Phi-3-mini-4k-instruct"}  # published as instruct models only


def base_of(name: str):
    candidates = (name.replace("-Instruct", ""), name.replace("-chat", ""), re.sub(r"-it$", "-pt", name),
                  re.sub(r"-it$", "", name), f"{name}-Base")
    return next((c for c in candidates if c != name and c in name_to_config), None)


def test_every_entry_is_indexed_once_by_name_and_by_repo():
    assert len(name_to_config) == len(repo_to_config) == len(configs)
    for entry in configs:
        assert name_to_config[entry["name"]] is entry and repo_to_config[entry["hf_repo_id"]] is entry


def test_entries_are_config_keyword_arguments():
    known = {f.name for f in fields(Config)}
    for entry in configs:
        assert set(entry) <= known, (entry["name"], set(entry) - known)
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", entry["hf_repo_id"]) and entry["architecture"].endswith("ForCausalLM")
        assert Config(**entry).name == entry["name"]


@pytest.mark.parametrize("name", [c["name"] for c in configs if CHAT.search(c["name"])])
def test_a_chat_model_is_its_base_models_architecture(name):
    base = base_of(name)
    if name in WITHOUT_BASE:
        assert base is None
        return
    assert base is not None, f"{name}: no base model in the registry"
    differences = {k for k in name_to_config[name].keys() | name_to_config[base].keys()
                   if name_to_config[name].get(k) != name_to_config[base].get(k)}
    # Qwen3's post-trained models are published with a longer context than their base models
    assert differences == ({"name", "hf_repo_id", "block_size"} if name.startswith("Qwen3") else {"name", "hf_repo_id"})


@pytest.mark.parametrize("name, field, value", [
    ("Mistral-7B-v0.3", "vocab_size", 32768),  # v0.3's 768 control tokens
    ("Mistral-7B-v0.1", "sliding_window", 4096),  # v0.2 dropped the window
    ("pythia-6.9b", "vocab_size", 50432),  # embedding rows padded past the tokenizer's 50,277
    ("gemma-3-270m", "vocab_size", 262144),
    ("gemma-3-4b-it", "vocab_size", 262208),  # 4B and up: 64 image tokens more
    ("gemma-2-27b", "attention_scores_scalar", 144),  # not its head size (128), unlike 2b and 9b
    ("Llama-3.2-1B", "tie_embeddings", True),  # Llama 3.1's models do not tie theirs
    ("Qwen3-8B", "tie_embeddings", False),  # the smaller Qwen3 models tie theirs
    ("falcon-7b", "n_query_groups", 1),  # multi-query attention
])
def test_sizes_that_break_the_familys_pattern(name, field, value):
    assert name_to_config[name][field] == value


def test_no_entry_needs_per_checkpoint_rope_tables():
    """Longrope factors are per checkpoint (Phi-3.5/4-mini): such models convert from their own config.json."""
    scalings = {(c.get("rope_scaling") or {}).get("rope_type") for c in configs}
    assert scalings == {None, "llama3", "linear"}
