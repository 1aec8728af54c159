"""LoRAConfig.from_file (lit_gpt/lora.py) on crafted lora_config.json files: every value's type and range is checked
before any layer is built, in one line naming the file and the key."""

import json

import pytest

from lit_gpt.lora import MAX_LORA_RANK, LoRAConfig
from lit_gpt.utils import UserError

GOOD = {"r": 8, "alpha": 16.0, "dropout": 0.05, "targets": ["query", "value"]}


@pytest.mark.parametrize("key, value, problem", [
    ("r", 10**9, f"must be a whole number from 1 to {MAX_LORA_RANK}"),  # ~128 GB of LoRA matrices
    ("r", 8.7, f"must be a whole number from 1 to {MAX_LORA_RANK}"),
    ("r", True, f"must be a whole number from 1 to {MAX_LORA_RANK}"),
    ("alpha", "16", "must be a number above 0 (below 10^6)"),
    ("alpha", 0, "must be a number above 0 (below 10^6)"),
    ("dropout", 1.5, "must be a number in [0, 1)"),
    ("targets", "query", "must be a list of layer names"),
    ("targets", [["query"]], "must be a list of layer names"),
])
def test_crafted_values_name_the_file_and_key(tmp_path, key, value, problem):
    path = tmp_path / "lora_config.json"
    path.write_text(json.dumps({**GOOD, key: value}))
    with pytest.raises(UserError) as e:
        LoRAConfig.from_file(tmp_path)
    assert str(e.value) == f"{path}: {key} = {value!r}: {problem}"


def test_missing_keys_unknown_targets_and_crafted_json(tmp_path):
    path = tmp_path / "lora_config.json"
    path.write_text(json.dumps({k: v for k, v in GOOD.items() if k != "r"}))
    with pytest.raises(UserError, match=f"{path}: r missing"):
        LoRAConfig.from_file(path)
    path.write_text(json.dumps({**GOOD, "targets": ["query", "everything"]}))
    with pytest.raises(UserError, match=f"{path}: unknown LoRA targets"):
        LoRAConfig.from_file(path)
    path.write_text('{"r": ' + "9" * 200 + "}")
    with pytest.raises(UserError, match=f"{path}: cannot read this LoRA config: line 1 holds a number of 200 digits"):
        LoRAConfig.from_file(path)
    path.write_text(json.dumps({k: v for k, v in GOOD.items() if k != "dropout"}))
    assert LoRAConfig.from_file(path) == LoRAConfig(r=8, alpha=16.0, dropout=0.0, targets=("query", "value"))


def test_a_rank_from_the_command_line_is_bounded_before_anything_is_allocated():
    assert LoRAConfig(r=MAX_LORA_RANK).r == MAX_LORA_RANK
    with pytest.raises(UserError, match=rf"^--lora_r 1000000000: the LoRA rank must be a whole number from 1 to "
                                        rf"{MAX_LORA_RANK}$"):
        LoRAConfig(r=10 ** 9)
