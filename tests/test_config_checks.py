"""lit_gpt/config_checks.py (SIZE_LIMITS, check_sizes, check_hf_sizes, MAX_PARAMETERS), through Config: a crafted
lit_config.json or config.json is refused in one line naming the file and the field, quickly, before any model is
built or any loop runs over its layers."""

import json
import time

import pytest

from lit_gpt.config import Config
from lit_gpt.config_checks import MAX_PARAMETERS, SIZE_LIMITS, ConfigError, check_sizes
from lit_gpt.registry import configs
from lit_gpt.utils import UserError

SMALL = dict(name="x", block_size=16, vocab_size=32, n_layer=1, n_head=2, n_embd=8)
GEMMA2 = {"architectures": ["Gemma2ForCausalLM"], "head_dim": 4, "hidden_activation": "gelu_pytorch_tanh",
          "hidden_size": 8, "intermediate_size": 16, "max_position_embeddings": 64, "num_attention_heads": 2,
          "num_hidden_layers": 2, "num_key_value_heads": 1, "sliding_window": 16, "vocab_size": 32}


def write(path, data) -> None:
    path.write_text(json.dumps(data))


def test_every_registered_model_is_within_the_bounds():
    for entry in configs:
        config = Config(**entry)
        assert config.parameter_estimate() < MAX_PARAMETERS / 10
        assert all(getattr(config, field) is None or getattr(config, field) <= limit / 4
                   for field, limit in SIZE_LIMITS.items()), entry["name"]


@pytest.mark.parametrize("field, value, problem", [
    ("n_layer", 100_000_000, "must be from 1 to 1,024"),
    ("n_layer", 1e8, "must be a whole number"),
    ("n_layer", True, "must be a whole number"),
    ("vocab_size", 0, "must be from 1 to 4,194,304"),
    ("n_embd", 1 << 20, "must be from 1 to 65,536"),
    ("head_size", 10**9, "must be from 1 to 8,192"),
    ("intermediate_size", -5, "must be from 1 to 1,048,576"),
    ("block_size", 1 << 40, "must be from 1 to 16,777,216"),
    ("n_query_groups", "2", "must be a whole number"),
])
def test_lit_config_sizes_name_the_file_and_field(tmp_path, field, value, problem):
    path = tmp_path / "lit_config.json"
    write(path, {**Config(**SMALL).to_dict(), field: value})
    started = time.perf_counter()
    with pytest.raises(UserError) as e:
        Config.from_file(path)
    assert time.perf_counter() - started < 1
    assert str(e.value) == (f"{path}: {field} = {value!r}: {problem}; fix the value or convert the checkpoint "
                            "again")


def test_sizes_that_multiply_to_an_impossible_model(tmp_path):
    with pytest.raises(ConfigError, match=r"make 2\.\d+e\+14 parameters, more than 2\.2e\+12"):
        Config(**{**SMALL, "n_layer": 1024, "n_embd": 65536, "n_head": 64, "intermediate_size": 1 << 20})
    with pytest.raises(ConfigError, match="n_embd = 4 is smaller than n_head = 8"):
        Config(**{**SMALL, "n_embd": 4, "n_head": 8})
    with pytest.raises(ConfigError) as e:
        check_sizes({"n_layer": 2, "n_head": None, "sliding_window": 1 << 30, "name": "not a size"})
    assert e.value.field == "sliding_window" and "must be from 1 to 16,777,216" in str(e.value)


@pytest.mark.parametrize("key, value", [("num_hidden_layers", 100_000_000), ("hidden_size", 2.5),
                                        ("vocab_size", 10**12), ("head_dim", -1)])
def test_hf_config_sizes_are_checked_before_anything_is_derived(tmp_path, key, value):
    checkpoint = tmp_path / "someone" / "crafted"
    checkpoint.mkdir(parents=True)
    write(checkpoint / "config.json", {**GEMMA2, key: value})  # Gemma 2's windows: a loop over the layers
    started = time.perf_counter()
    with pytest.raises(UserError) as e:
        Config.from_checkpoint(checkpoint)
    assert time.perf_counter() - started < 1
    assert str(e.value).startswith(f"{checkpoint / 'config.json'}: {key} = {value!r}: must be ")
    assert str(e.value).endswith("; fix the value in the file")
    write(checkpoint / "config.json", {"architectures": ["Gemma3ForConditionalGeneration"],
                                       "text_config": {**GEMMA2, key: value}})
    with pytest.raises(UserError, match=f"config.json: {key} = "):
        Config.from_checkpoint(checkpoint)
    write(checkpoint / "config.json", GEMMA2)  # the same file with sane sizes is fine
    assert Config.from_checkpoint(checkpoint).n_layer == 2


def test_a_crafted_json_file_is_one_line(tmp_path):
    path = tmp_path / "lit_config.json"
    path.write_text('{"n_layer": ' + "9" * 5000 + "}")
    with pytest.raises(UserError, match=f"{path}: cannot read this model config: line 1 holds a number of 5000 "
                                        "digits"):
        Config.from_file(path)
    path.write_text('{"a": ' * 200 + "1" + "}" * 200)
    with pytest.raises(UserError, match="nested more than 64 levels deep; convert the checkpoint again"):
        Config.from_file(path)
