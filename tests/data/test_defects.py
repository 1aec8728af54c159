"""lit_gpt/data/defects.py: each defect a prepared example can have, found in a real example (Llama 2's tokenizer,
Alpaca's template, tokenized by the data pipeline) spoiled in one way at a time; a clean example has none."""

import pytest
import torch

from helpers import SHARED
from lit_gpt.data.defects import DEFECTS, example_defects
from lit_gpt.data.tokenize import IGNORE_INDEX, tokenize_examples
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(SHARED / "tokenizers" / "llama-2")


@pytest.fixture(scope="module")
def clean(tokenizer):
    row = {"instruction": "What is the capital of France?", "input": "", "output": "Paris.", "source": "test",
           "id": "test-0"}
    (example,), _ = tokenize_examples([row], tokenizer, get_prompt_style("alpaca"), max_seq_length=256)
    return example


def defects(example, tokenizer, **kwargs):
    return example_defects(example, tokenizer.bos_id, tokenizer.eos_id, use_bos=tokenizer.use_bos, **kwargs)


def spoiled(example, input_ids=None, labels=None, **fields):
    return {**example, "input_ids": example["input_ids"] if input_ids is None else input_ids,
            "labels": example["labels"] if labels is None else labels, **fields}


def test_a_clean_example_has_no_defects(clean, tokenizer):
    ids, labels = clean["input_ids"], clean["labels"]
    assert tokenizer.use_bos and int(ids[0]) == tokenizer.bos_id and int(labels[-1]) == tokenizer.eos_id
    assert defects(clean, tokenizer) == []
    assert defects(clean, tokenizer, max_seq_length=len(ids)) == []  # exactly at the limit: fine


def test_each_defect_on_its_own(clean, tokenizer):
    ids, labels = clean["input_ids"], clean["labels"]
    bos, masked = torch.tensor([tokenizer.bos_id]), torch.tensor([IGNORE_INDEX])
    wrong_label = labels.clone()
    wrong_label[-2] = (int(ids[-2]) + 1) % tokenizer.vocab_size  # a trained label that is not the input id
    only_eos = torch.where(torch.arange(len(labels)) == len(labels) - 1, labels, IGNORE_INDEX)
    cases = {
        "labels differ from input_ids": spoiled(clean, labels=wrong_label),
        "trained span lacks EOS": spoiled(clean, ids[:-1], labels[:-1]),  # cut before the end token
        "nothing trained": spoiled(clean, labels=torch.full_like(labels, IGNORE_INDEX)),
        "empty response": spoiled(clean, labels=only_eos),  # only the end token is trained
        "doubled BOS": spoiled(clean, torch.cat([bos, ids]), torch.cat([masked, labels])),
        "missing BOS": spoiled(clean, ids[1:], labels[1:]),
    }
    for defect, example in cases.items():
        assert defects(example, tokenizer) == [defect], defect
    assert defects(spoiled(clean, output="  \n"), tokenizer) == ["empty response"]  # the answer's text is blank
    assert defects(clean, tokenizer, max_seq_length=len(ids) - 1) == ["longer than max_seq_length"]
    assert set(cases) | {"longer than max_seq_length"} == set(DEFECTS)  # every name in DEFECTS is reachable


def test_several_defects_are_all_reported(clean, tokenizer):
    ids, labels = clean["input_ids"], clean["labels"]
    bos, masked = torch.tensor([tokenizer.bos_id]), torch.tensor([IGNORE_INDEX])
    example = spoiled(clean, torch.cat([bos, ids[:-1]]), torch.cat([masked, labels[:-1]]), output="")
    assert defects(example, tokenizer, max_seq_length=8) == ["trained span lacks EOS", "empty response",
                                                              "doubled BOS", "longer than max_seq_length"]


def test_labels_of_another_length_are_one_defect(clean, tokenizer):
    example = spoiled(clean, labels=clean["labels"][:-1])
    assert defects(example, tokenizer, max_seq_length=1) == ["labels differ from input_ids"]


def test_a_tokenizer_without_bos_or_eos_skips_their_checks(clean):
    cut = spoiled(clean, clean["input_ids"][1:-1], clean["labels"][1:-1])  # no BOS, no EOS
    assert example_defects(cut, bos_id=None, eos_id=None, use_bos=True) == []
    assert example_defects(cut, bos_id=1, eos_id=None, use_bos=False) == []  # BOS only required where it is used
