"""lit_gpt/data/preferences.py: preference rows in each common layout -> normalized pairs (bad rows -> one short
reason), and pairs -> the prompt's ids once plus each answer's ids and mask, equal to what the same conversation
tokenizes to as instruction data. The script end to end: tests/scripts/test_prepare_preferences_script.py."""

import json
from collections import Counter

import pytest
import torch

from lit_gpt.data.normalize import BadRecord, is_multi_turn
from lit_gpt.data.preferences import PREFERENCES, normalize_pair, tokenize_pairs
from lit_gpt.data.prepare import prepare
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.records import iter_records
from lit_gpt.data.tokenize import IGNORE_INDEX, tokenize_examples
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError


def user(text: str, **extra) -> dict:
    return {"role": "user", "content": text, **extra}


def test_the_four_layouts():
    chat = normalize_pair({"chosen": [user("Hi?"), {"role": "assistant", "content": "Hello."}],
                           "rejected": [user("Hi?"), {"role": "assistant", "content": "Go away."}],
                           "prompt": "Hi?", "score_chosen": 8.0}, source="uf")
    assert chat == {"prompt": [user("Hi?")], "chosen": "Hello.", "rejected": "Go away.", "source": "uf",
                    "metadata": {"score_chosen": 8.0}}
    columns = normalize_pair({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away.", "id": 7})
    assert (columns["prompt"], columns["id"]) == ([user("Hi?", input="")], "7")
    hh = normalize_pair({"chosen": "\n\nHuman: Hi?\n\nAssistant: Hey.\n\nHuman: Book?\n\nAssistant: Dune, I think.",
                         "rejected": "\n\nHuman: Hi?\n\nAssistant: Hey.\n\nHuman: Book?\n\nAssistant: Do not read."})
    assert hh["prompt"] == [user("Hi?"), {"role": "assistant", "content": "Hey."}, user("Book?")]
    assert (hh["chosen"], hh["rejected"]) == ("Dune, I think.", "Do not read.")  # the shared "D" stays in both
    farm = normalize_pair({"instruction": "Greet.", "input": "in French", "output_1": "Salut", "output_2": "Bonjour",
                           "preference": 2})
    assert farm["prompt"] == [user("Greet.", input="in French")]
    assert (farm["chosen"], farm["rejected"]) == ("Bonjour", "Salut")


@pytest.mark.parametrize("row, reason", [
    ({"prompt": "q", "chosen": "a", "rejected": " a "}, "chosen and rejected are the same answer"),
    ({"prompt": "q", "chosen": "a"}, "missing rejected"),
    ({"prompt": " ", "chosen": "a", "rejected": "b"}, "empty prompt"),
    ({"chosen": [user("q"), {"role": "assistant", "content": "a"}],
      "rejected": [user("other q"), {"role": "assistant", "content": "b"}]},
     "chosen and rejected conversations differ before their answers"),
    ({"chosen": [user("q")], "rejected": [user("q"), {"role": "assistant", "content": "b"}]},
     "chosen does not end with an assistant answer"),
    ({"chosen": "Human: hi. Bot: yes", "rejected": "Human: hi. Bot: no"}, "no prompt: no prompt column"),
    ({"instruction": "q", "output_1": "a", "output_2": "b", "preference": 0}, "preference is not 1 or 2"),
    ({"prompt": [user("q"), {"role": "assistant", "content": "a"}], "chosen": "x", "rejected": "y"},
     "prompt does not end with a user message"),
])
def test_rows_that_are_not_pairs_get_one_short_reason(row, reason):
    with pytest.raises(BadRecord, match=f"^{reason}"):
        normalize_pair(row)


@pytest.mark.parametrize("tokenizer_name, style", [("smollm2", "chatml"), ("llama-2", "alpaca"),
                                                   ("llama-2", "llama2-chat")])
def test_prompt_once_then_each_answer_as_instruction_data_tokenizes_it(shared_dir, tokenizer_name, style):
    tokenizer = Tokenizer(shared_dir / "tokenizers" / tokenizer_name)
    style = get_prompt_style(style)
    pairs = [normalize_pair({"prompt": "Name a colour.", "chosen": "Red.", "rejected": "I will not."}),
             normalize_pair({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A fruit?\n\nAssistant: Apple.",
                             "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A fruit?\n\nAssistant: No."})]
    kept, dropped = tokenize_pairs(pairs, tokenizer, style, max_seq_length=256)
    assert len(kept) == 2 and not dropped
    for pair in kept:
        for answer in ("chosen", "rejected"):
            messages = [*pair["prompt"], {"role": "assistant", "content": pair[answer]}]
            example = {"instruction": "", "output": "", "messages": messages}
            (expected,), _ = tokenize_examples([example], tokenizer, style, 256)
            ids = torch.cat([pair["prompt_ids"], pair[f"{answer}_ids"]])
            assert torch.equal(ids, expected["input_ids"])
            trained = expected["labels"] != IGNORE_INDEX
            last = int(trained.nonzero()[-1])  # only the final answer is trained: earlier ones are the prompt's
            start = last
            while start > 0 and trained[start - 1]:
                start -= 1
            mask = torch.cat([torch.zeros(len(pair["prompt_ids"]), dtype=torch.bool), pair[f"{answer}_mask"]])
            assert torch.equal(mask.nonzero().flatten(), torch.arange(start, last + 1))
        assert not pair["truncated"]


def test_long_answers_are_cut_with_their_eos_and_long_prompts_dropped(shared_dir):
    tokenizer = Tokenizer(shared_dir / "tokenizers" / "smollm2")
    style = get_prompt_style("chatml")
    pairs = [normalize_pair({"prompt": "Say yes.", "chosen": "yes " * 50, "rejected": "no"}),
             normalize_pair({"prompt": "word " * 100, "chosen": "yes", "rejected": "no"})]
    kept, dropped = tokenize_pairs(pairs, tokenizer, style, max_seq_length=40)
    assert dropped == {"prompt longer than max_seq_length": 1} and len(kept) == 1
    pair = kept[0]
    assert pair["truncated"] and len(pair["prompt_ids"]) + len(pair["chosen_ids"]) == 40
    assert pair["chosen_ids"][-1] == tokenizer.eos_id and pair["chosen_mask"][-1]
    assert pair["rejected_mask"].all() and len(pair["prompt_ids"]) + len(pair["rejected_ids"]) < 40
    kept, dropped = tokenize_pairs(pairs, tokenizer, style, max_seq_length=40, truncation="drop")
    assert not kept and sum(dropped.values()) == 2
    with pytest.raises(UserError, match="--mask_inputs false does not apply to preference pairs"):
        tokenize_pairs(pairs, tokenizer, style, max_seq_length=40, mask_inputs=False)


def test_the_manifests_counts_are_those_of_the_written_pairs(tiny_checkpoint_dir, tmp_path):
    system = {"role": "system", "content": "Answer briefly."}
    answer = {"role": "assistant", "content": "Dune."}
    rows = [{"prompt": [system, user("Name a book.")], "chosen": "Dune.", "rejected": "No."},  # one turn
            {"prompt": [user("Hi?"), {"role": "assistant", "content": "Hey."}, user("Book?")], "chosen": "Dune.",
             "rejected": "No."},  # two turns
            {"prompt": "Say yes.", "chosen": "yes " * 50, "rejected": "no", "source": "long"},  # truncated
            {"prompt": "word " * 100, "chosen": "yes", "rejected": "no"},  # dropped: the prompt alone is too long
            {"chosen": [user("q"), answer], "rejected": [user("other q"), answer]}]  # dropped: not a pair
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    manifest = prepare(iter_records(path), name="pairs", source_files=[path], example_format=PREFERENCES,
                       checkpoint_dir=tiny_checkpoint_dir("smollm2"), destination_path=tmp_path / "out",
                       prompt_style="chatml", max_seq_length=40, test_split_fraction=0.0)
    train, test, _ = load_prepared(tmp_path / "out", format=PREFERENCES.name)
    kept, counts = train + test, manifest["counts"]
    assert counts["multi_turn"] == sum(is_multi_turn(p["prompt"]) for p in kept) == 1  # a system message is no turn
    assert (counts["train"], counts["test"], counts["rows_out"]) == (len(train), len(test), len(kept)) == (3, 0, 3)
    assert counts["rows_in"] == len(rows) == counts["rows_out"] + sum(counts["dropped"].values())
    assert counts["truncated"] == sum(p["truncated"] for p in kept) == 1
    assert manifest["sources"] == dict(Counter(p["source"] for p in kept)) == {"long": 1, "pairs": 2}
