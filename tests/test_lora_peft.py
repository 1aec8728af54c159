"""lit_gpt/lora.py's variants against PEFT's (the reference implementation): LoRA, rsLoRA (use_rslora) and DoRA
(use_dora) on q and v of a tiny Llama, with the same base weights and the same A, B (and DoRA magnitudes) in both:
the logits, the gradients of the LoRA tensors and the merged weights (lit_gpt.lora_merge vs PEFT's merge_and_unload)
agree to 1e-5, in float64 so that the comparison is of the math, not of rounding."""

import copy

import pytest
import torch

from helpers import TOKENS, random_hf_model, randomize_lora
from lit_gpt.config import Config
from lit_gpt.convert.hf_mapping import hf_state_dict_to_lit, lit_to_hf
from lit_gpt.lora import LoRAConfig
from lit_gpt.lora_merge import merged_state_dict
from lit_gpt.model import GPT

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

R, ALPHA = 4, 8.0  # alpha / r = 2 and alpha / sqrt(r) = 4: rsLoRA scaled like LoRA would not pass
OURS_TO_PEFT = {"q": "q_proj", "v": "v_proj"}


def twin_models(variant: str, dropout: float = 0.0):
    """(our GPT with LoRA, PEFT's model with LoRA, our base logits): the same tiny Llama, the same LoRA tensors."""
    hf_model = random_hf_model("llama-gqa").double()
    config = Config.from_hf_config(hf_model.config.to_dict(), name="llama-gqa")
    ours = GPT(config).double().eval()
    ours.load_state_dict(hf_state_dict_to_lit(hf_model.state_dict(), config))
    with torch.no_grad():
        base_logits = ours(TOKENS)
    LoRAConfig(r=R, alpha=ALPHA, dropout=dropout, targets=("query", "value"), variant=variant).apply(ours)
    randomize_lora(ours)
    ours.eval()
    theirs = peft.get_peft_model(copy.deepcopy(hf_model), peft.LoraConfig(
        r=R, lora_alpha=ALPHA, lora_dropout=dropout, target_modules=["q_proj", "v_proj"],
        use_rslora=variant == "rslora", use_dora=variant == "dora")).eval()
    layers = theirs.base_model.model.model.layers
    with torch.no_grad():
        for block, layer in zip(ours.blocks, layers):
            for name, hf_name in OURS_TO_PEFT.items():
                mine, peft_layer = getattr(block.attn, name), getattr(layer.self_attn, hf_name)
                peft_layer.lora_A["default"].weight.copy_(mine.lora_A)
                peft_layer.lora_B["default"].weight.copy_(mine.lora_B)
                if variant == "dora":
                    peft_layer.lora_magnitude_vector["default"].weight.copy_(mine.lora_magnitude)
    return ours, theirs, base_logits


@pytest.mark.parametrize("variant", ["lora", "rslora", "dora"])
def test_logits_gradients_and_merged_weights_equal_peft(variant):
    ours, theirs, base_logits = twin_models(variant)
    logits = ours(TOKENS)
    peft_logits = theirs(TOKENS).logits
    assert (logits - base_logits).abs().max() > 0.1  # the update moves the logits
    torch.testing.assert_close(logits, peft_logits, atol=1e-5, rtol=1e-5)

    logits.pow(2).mean().backward()
    peft_logits.pow(2).mean().backward()
    layers = theirs.base_model.model.model.layers
    for block, layer in zip(ours.blocks, layers):
        for name, hf_name in OURS_TO_PEFT.items():
            mine, peft_layer = getattr(block.attn, name), getattr(layer.self_attn, hf_name)
            pairs = [(mine.lora_A, peft_layer.lora_A["default"].weight),
                     (mine.lora_B, peft_layer.lora_B["default"].weight)]
            if variant == "dora":
                pairs.append((mine.lora_magnitude, peft_layer.lora_magnitude_vector["default"].weight))
            for param, peft_param in pairs:
                assert param.grad.abs().max() > 0
                torch.testing.assert_close(param.grad, peft_param.grad, atol=1e-5, rtol=1e-5)

    with torch.no_grad():
        merged = lit_to_hf(merged_state_dict(ours), ours.config)
        peft_merged = theirs.merge_and_unload().state_dict()
    assert merged.keys() == peft_merged.keys()
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, peft_merged[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("variant", ["lora", "dora"])
def test_training_with_dropout_equals_peft_under_the_same_masks(variant):
    """With dropout both draw one mask per layer for the LoRA path (DoRA's rescaled base term uses the dropped-out
    input too, as PEFT's does): the same seed gives the same logits."""
    ours, theirs, _ = twin_models(variant, dropout=0.3)
    ours.train()
    theirs.train()
    torch.manual_seed(7)
    logits = ours(TOKENS)
    torch.manual_seed(7)
    peft_logits = theirs(TOKENS).logits
    torch.testing.assert_close(logits, peft_logits, atol=1e-5, rtol=1e-5)
    ours.eval()
    with torch.no_grad():
        assert (ours(TOKENS) - logits).abs().max() > 1e-3  # the masks were not all ones
