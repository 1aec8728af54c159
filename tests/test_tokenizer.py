import json
import shutil

import pytest

from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError

ALL = ["llama-2", "mistral-v1", "smollm2", "gpt-neox", "gpt2"]
ROUND_TRIP = ["Hello world", "  leading spaces and trailing  ", "line one\nline two\n\n\ttab",
              "中文测试：你好，世界！", "emoji 🦙🚀 😶‍🌫️ mixed ✅", "Äpfel über Straße, нещо на Български",
              "code: def f(x):\n    return x ** 2  # comment"]


def golden(shared_dir, name):
    inputs = (shared_dir / "tokenizers/golden" / f"{name}.inp").read_text().split("\n__ggml_vocab_test__\n")
    outputs = (shared_dir / "tokenizers/golden" / f"{name}.out").read_text().split("\n")
    return list(zip(inputs, ([int(i) for i in line.split()] for line in outputs)))


@pytest.mark.parametrize(("vectors", "folder"), [("llama-spm", "llama-2"), ("gpt-2", "gpt2")])
def test_ids_equal_llama_cpp_golden_vectors(shared_dir, vectors, folder):
    tokenizer = Tokenizer(shared_dir / "tokenizers" / folder)
    cases = golden(shared_dir, vectors)
    assert len(cases) > 40
    for text, expected in cases:
        assert tokenizer.encode_ids(text) == expected, text
    assert tokenizer.encode_batch([t for t, _ in cases]) == [e for _, e in cases]


@pytest.mark.parametrize("folder", ALL)
def test_round_trip(shared_dir, folder):
    tokenizer = Tokenizer(shared_dir / "tokenizers" / folder)
    for text in ROUND_TRIP:
        ids = tokenizer.encode(text, bos=False)
        assert tokenizer.decode(ids) == text, (folder, text)
        assert int(ids.max()) < tokenizer.vocab_size


@pytest.mark.parametrize(("folder", "bos", "eos", "use_bos", "backend"), [
    ("llama-2", 1, 2, True, "sentencepiece"),
    ("mistral-v1", 1, 2, True, "sentencepiece"),
    ("smollm2", 1, 2, False, "huggingface"),
    ("gpt-neox", 0, 0, False, "huggingface"),
    ("gpt2", 50256, 50256, False, "huggingface"),
])
def test_special_ids_from_configs(shared_dir, folder, bos, eos, use_bos, backend):
    tokenizer = Tokenizer(shared_dir / "tokenizers" / folder)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.use_bos, tokenizer.backend) == (bos, eos, use_bos, backend)
    assert eos in tokenizer.stop_ids
    ids = tokenizer.encode("Hi there", eos=True)
    assert ids[-1] == eos
    assert (ids[0] == bos) == use_bos


def test_never_doubled_bos(shared_dir):
    llama = Tokenizer(shared_dir / "tokenizers/llama-2")
    ids = llama.encode("Hello")
    assert ids[0] == 1 and ids[1] != 1
    assert llama.encode(llama.decode(ids)).tolist() == ids.tolist()
    smol = Tokenizer(shared_dir / "tokenizers/smollm2")
    # the text itself starts with the BOS token string: forcing bos must not add a second one
    ids = smol.encode("<|im_start|>user\nHi<|im_end|>", bos=True)
    assert ids[0] == smol.bos_id and ids[1] != smol.bos_id
    assert smol.encode("plain", bos=True).tolist()[:2] == [smol.bos_id, smol.encode_ids("plain")[0]]


def test_special_token_text_is_parsed_by_tokenizer_json(shared_dir):
    smol = Tokenizer(shared_dir / "tokenizers/smollm2")
    assert smol.encode_ids("<|im_end|>") == [smol.eos_id]
    assert smol.chat_template and "im_start" in smol.chat_template


@pytest.mark.parametrize("folder", ALL)
def test_offsets_cover_the_text(shared_dir, folder):
    tokenizer = Tokenizer(shared_dir / "tokenizers" / folder)
    text = "Answer: 你好 world 🦙!"
    [(ids, spans)] = tokenizer.encode_with_offsets([text])
    assert ids == tokenizer.encode_ids(text)
    assert len(spans) == len(ids)
    assert all(0 <= s <= e <= len(text) for s, e in spans)
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    # the tokens whose span reaches past the start of "world" decode to the text from there on
    # (a SentencePiece piece "▁world" spans the space before it, so "reaches past", not "starts after")
    start = text.index("world")
    first = next(i for i, (_, e) in enumerate(spans) if e > start)
    assert tokenizer.decode(ids[first:]).strip() == text[start:]


def test_fingerprint_tells_tokenizers_apart(shared_dir):
    prints = {Tokenizer(shared_dir / "tokenizers" / f).fingerprint for f in ALL}
    assert len(prints) == len(ALL)


def test_missing_or_broken_tokenizer_is_a_user_error(tmp_path, shared_dir):
    with pytest.raises(UserError, match="no tokenizer.model or tokenizer.json"):
        Tokenizer(tmp_path)
    with pytest.raises(UserError, match="not found"):
        Tokenizer(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(shared_dir / "tokenizers/gpt2", broken)
    (broken / "tokenizer.json").write_text("{ not json")
    with pytest.raises(UserError, match="tokenizer.json"):
        Tokenizer(broken)
    (broken / "tokenizer.json").write_text((shared_dir / "tokenizers/gpt2/tokenizer.json").read_text())
    (broken / "tokenizer_config.json").write_text("{")
    with pytest.raises(UserError, match="tokenizer_config.json"):
        Tokenizer(broken)


def test_generation_config_eos_list(tmp_path, shared_dir):
    folder = tmp_path / "tok"
    shutil.copytree(shared_dir / "tokenizers/smollm2", folder)
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [2, 0]}))
    tokenizer = Tokenizer(folder)
    assert tokenizer.eos_id == 2 and tokenizer.stop_ids == [2, 0]


def test_end_of_turn_tokens_stop_generation_even_when_generation_config_lists_only_eos(tmp_path, shared_dir):
    # a chat model whose configs name <|endoftext|> as its EOS (Phi-3 does): its chat format's <|im_end|> must still
    # end an answer
    folder = tmp_path / "tok"
    shutil.copytree(shared_dir / "tokenizers/smollm2", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": "<|endoftext|>"}))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 0}))
    tokenizer = Tokenizer(folder)
    assert tokenizer.eos_id == 0 and tokenizer.stop_ids == [0, tokenizer.token_to_id("<|im_end|>")] == [0, 2]
    assert Tokenizer(shared_dir / "tokenizers/llama-2").stop_ids == [2]  # none of them in its vocabulary


def test_tokenizer_json_is_used_when_it_has_tokens_the_sentencepiece_model_lacks(tmp_path, shared_dir):
    # Phi-3 ships tokenizer.model (Llama-2's 32000 pieces) and tokenizer.json with <|user|>, <|end|>, ... on top:
    # its chat format needs those as single tokens, as transformers tokenizes them
    from transformers import AutoTokenizer

    from helpers import ROOT
    from lit_gpt.data.tokenize import encode_prompt

    folder = tmp_path / "phi-3-like"
    hf = AutoTokenizer.from_pretrained(shared_dir / "tokenizers/mistral-v1")
    hf.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", "<|end|>"]})
    hf.save_pretrained(folder)
    shutil.copy(shared_dir / "tokenizers/mistral-v1/tokenizer.model", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    added = {str(hf.convert_tokens_to_ids(t)): {"content": t, "special": True}
             for t in ("<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>")}
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "added_tokens_decoder": added}))
    tokenizer = Tokenizer(folder)
    assert tokenizer.backend == "huggingface" and tokenizer.token_to_id("<|end|>") == 32002
    assert 32002 in tokenizer.stop_ids
    template = ROOT / "tests/fixtures/chat_templates/microsoft-Phi-3-mini-4k-instruct.jinja"
    text = hf.apply_chat_template([{"role": "user", "content": "Hi"}], chat_template=template.read_text(),
                                  tokenize=False, add_generation_prompt=True)
    assert encode_prompt(tokenizer, "phi-3", "Hi").tolist()[1:] == hf(text, add_special_tokens=False).input_ids
    (folder / "tokenizer_config.json").write_text(json.dumps(config))  # nothing missing: SentencePiece as before
    assert Tokenizer(folder).backend == "sentencepiece"


@pytest.mark.parametrize("file, content, problem", [
    ("generation_config.json", {"eos_token_id": 49152}, "eos_token_id = 49152: must be a token id from 0 to 49151"),
    ("generation_config.json", {"eos_token_id": [2, -1]}, "eos_token_id = [2, -1]: must be a token id from 0"),
    ("generation_config.json", {"bos_token_id": "1"}, "bos_token_id = '1': must be a token id from 0"),
    ("generation_config.json", {"pad_token_id": 1.0}, "pad_token_id = 1.0: must be a token id from 0"),
    ("tokenizer_config.json", {"eos_token": 2}, "eos_token = 2: must be a token's text"),
    ("tokenizer_config.json", {"add_bos_token": "yes"}, "add_bos_token = 'yes': must be true or false"),
    ("tokenizer_config.json", {"chat_template": {"a": 1}}, "chat_template must be a template text"),
    # a named token the vocabulary lacks would leave the id to generation_config.json without a word
    ("tokenizer_config.json", {"eos_token": "<|nope|>"}, "eos_token '<|nope|>' is not a token of tokenizer.json"),
    ("tokenizer_config.json", {"bos_token": {"content": "<s>"}}, "bos_token '<s>' is not a token of tokenizer.json"),
    ("tokenizer_config.json", {"eos_token": {"text": "<|im_end|>"}}, "eos_token = {'text': '<|im_end|>'}: must be"),
    ("tokenizer_config.json", {"added_tokens_decoder": [1, 2]}, "added_tokens_decoder must map token ids to"),
    ("tokenizer_config.json", {"added_tokens_decoder": {"2": "<|im_end|>"}}, "added_tokens_decoder must map"),
])
def test_crafted_tokenizer_configs_name_the_file_and_field(tmp_path, shared_dir, file, content, problem):
    folder = tmp_path / "tok"
    shutil.copytree(shared_dir / "tokenizers/smollm2", folder)
    (folder / file).write_text(json.dumps(content))
    with pytest.raises(UserError) as e:
        Tokenizer(folder)
    assert str(e.value).startswith(f"{folder / file}: {problem}") and "\n" not in str(e.value)
    (folder / file).write_bytes(b'{"eos_token": "\xc3"}')
    with pytest.raises(UserError, match=f"{folder / file}: cannot read this tokenizer config: not UTF-8 "
                                        r"\(byte 15 is 0xc3\)"):
        Tokenizer(folder)
