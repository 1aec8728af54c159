"""lit_gpt/convert/hf_mapping.py: config.json written for each registry model derives back to the same Config; what a
family's HF class cannot express is refused. (Weight names are proven by logits in test_convert.py and
scripts/test_convert_scripts.py.)"""

import pytest

from lit_gpt.config import Config
from lit_gpt.registry import configs
from lit_gpt.convert.hf_mapping import hf_config_dict
from lit_gpt.utils import UserError


@pytest.mark.parametrize("entry", configs, ids=[c["name"] for c in configs])
def test_hf_config_dict_derives_back_to_the_same_config(entry):
    config = Config(**entry)
    derived = Config.from_hf_config(hf_config_dict(config), name=config.name)
    assert {**derived.to_dict(), "hf_repo_id": config.hf_repo_id} == config.to_dict()


def test_hf_config_dict_refuses_what_the_family_cannot_express():
    with pytest.raises(UserError, match="bias=True cannot be expressed as a LlamaForCausalLM"):
        hf_config_dict(Config(name="x", n_layer=1, n_head=2, n_embd=8, bias=True))
    with pytest.raises(UserError, match="n_query_groups=2"):
        hf_config_dict(Config.from_name("falcon-7b", n_head=4, n_embd=8, n_query_groups=2))
