"""The data pipeline: reading and validating rows, one tokenization per conversation, labels, truncation, manifest.

The two full runs (LIMA multi-turn with the SmolLM2 byte-level BPE tokenizer and ChatML; the 9k Alpaca sample with
the Llama-2 SentencePiece tokenizer and the alpaca template) are module fixtures; every example they produce is
checked against the invariants of the prepared-data contract.
"""

import gzip
import itertools
import json
import re
import time

import pytest
import torch

from lit_gpt.data.normalize import BadRecord, conversation, normalize
from lit_gpt.data.prepare import prepare, split_examples
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.records import iter_records, load_records
from lit_gpt.data.tokenize import (IGNORE_INDEX, _with_bos_and_eos, decode_with_specials, encode_prompt,
                                   encode_segments, fit_to_length, render_text, training_segments)
from lit_gpt.prompts import Special, get_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError


# ---- invariants of prepared data (also used by test_prepare_scripts.py) ---------------------------------------------
def expected_text(tokenizer, style, example) -> str:
    """The text an example's ids must decode to: the style's rendering, with BOS/EOS where the pipeline adds them."""
    segments = training_segments(style, conversation(example))
    text = render_text(tokenizer, segments)
    first, last = segments[0][0], segments[-1][0]
    if tokenizer.use_bos and not (isinstance(first, Special) and first.kind == "bos"):
        text = tokenizer.id_to_token(tokenizer.bos_id) + text
    ends_with_eos = isinstance(last, Special) and (last.kind == "eos"
                                                   or tokenizer.token_to_id(last) == tokenizer.eos_id)
    if not ends_with_eos:
        text += tokenizer.id_to_token(tokenizer.eos_id)
    return text


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def check_prepared(examples, tokenizer, manifest) -> None:
    """Every example: labels equal input_ids except at masked positions, the last trained label is EOS, no doubled BOS,
    the ids decode to the prompt style's text exactly, the trained tokens are the answers with their end tokens."""
    style = get_prompt_style(manifest["prompt_style"])
    eos, bos = tokenizer.eos_id, tokenizer.bos_id
    truncated = []
    for example in examples:
        ids, labels = example["input_ids"], example["labels"]
        assert ids.dtype == labels.dtype == torch.long and ids.ndim == 1 and ids.shape == labels.shape
        ids, labels = ids.tolist(), labels.tolist()
        assert len(ids) <= manifest["max_seq_length"]
        trained = [label != IGNORE_INDEX for label in labels]
        assert all(label == i for i, label, t in zip(ids, labels, trained) if t)
        trained_ids = [i for i, t in zip(ids, trained) if t]
        assert trained_ids[-1] == eos
        assert all(trained) if not manifest["mask_inputs"] else not trained[0], "prompt masked iff mask_inputs"
        assert not (len(ids) > 1 and ids[0] == bos and ids[1] == bos), "doubled BOS"
        assert ids[0] == bos or not tokenizer.use_bos
        segments = training_segments(style, conversation(example))
        if example["truncated"]:
            truncated.append((ids, segments))
            continue
        assert decode_with_specials(tokenizer, ids) == expected_text(tokenizer, style, example)
        if manifest["mask_inputs"]:
            end_of_turn = render_text(tokenizer, segments[-1:])
            answers = [m["content"] for m in conversation(example) if m["role"] == "assistant"]
            trained_text = decode_with_specials(tokenizer, trained_ids)
            assert squeeze(trained_text) == squeeze("".join(a + end_of_turn for a in answers))
            assert trained_text.rstrip().endswith(end_of_turn)
    # a truncated example is the start of the full one, ended with EOS
    for (ids, _), (full, flags) in zip(truncated, encode_segments(tokenizer, [s for _, s in truncated])):
        full, _ = _with_bos_and_eos(tokenizer, full, flags)
        assert len(full) > manifest["max_seq_length"]
        assert ids[:-1] == full[: len(ids) - 1] and ids[-1] == eos


# ---- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("smollm2", block_size=512)


@pytest.fixture(scope="module")
def llama_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("llama-2", block_size=2048)


@pytest.fixture(scope="module")
def lima(shared_dir, smollm2_dir, tmp_path_factory):
    path = shared_dir / "datasets" / "lima" / "train.jsonl"
    out = tmp_path_factory.mktemp("lima")
    manifest = prepare(iter_records(path), name="lima", source_files=[path], checkpoint_dir=smollm2_dir,
                       destination_path=out)
    return out, manifest


@pytest.fixture(scope="module")
def alpaca(shared_dir, llama_dir, tmp_path_factory):
    path = shared_dir / "datasets" / "alpaca" / "alpaca_random_9k.json"
    out = tmp_path_factory.mktemp("alpaca")
    cpu = time.process_time()
    manifest = prepare(iter_records(path), name="alpaca", source_files=[path], checkpoint_dir=llama_dir,
                       destination_path=out)
    return out, manifest, time.process_time() - cpu


# ---- full runs on real data --------------------------------------------------------------------------------------
def test_lima_multi_turn_chatml(lima, smollm2_dir):
    out, manifest = lima
    tokenizer = Tokenizer(smollm2_dir)
    train, test, loaded = load_prepared(out, tokenizer)
    assert loaded == manifest
    counts = manifest["counts"]
    assert counts["rows_in"] == 1029 and counts["rows_valid"] == 1029
    assert counts["train"] + counts["test"] + sum(counts["dropped"].values()) == 1029
    assert counts["multi_turn"] == sum(1 for e in train + test if e.get("messages")) >= 28
    assert set(counts["dropped"]) <= {"prompt longer than max_seq_length"}
    assert counts["truncated"] == sum(e["truncated"] for e in train + test) > 100  # block_size 512: LIMA is long
    assert manifest["prompt_style"] == "smollm2" and manifest["max_seq_length"] == 512  # defaults from the checkpoint
    assert manifest["tokenizer_fingerprint"] == tokenizer.fingerprint
    assert manifest["token_lengths"]["max"] == 512 and manifest["token_lengths"]["p50"] <= 512
    check_prepared(train + test, tokenizer, manifest)
    multi = next(e for e in train + test if e.get("messages") and not e["truncated"])
    assert multi["instruction"] == multi["messages"][0]["content"]
    assert multi["output"] == multi["messages"][1]["content"]
    # every assistant turn trained: as many trained stretches as answers
    trained = (multi["labels"] != IGNORE_INDEX).int()
    stretches = int((trained[1:] > trained[:-1]).sum()) + int(trained[0])
    assert stretches == sum(m["role"] == "assistant" for m in multi["messages"])


def test_alpaca_sentencepiece(alpaca, llama_dir):
    out, manifest, cpu_seconds = alpaca
    tokenizer = Tokenizer(llama_dir)
    train, test, _ = load_prepared(out, tokenizer)
    counts = manifest["counts"]
    assert counts["rows_in"] == 9229
    assert counts["dropped"] == {"empty output": 4}  # the sample has 4 rows with an empty output
    assert counts["train"] + counts["test"] == 9225 and counts["test"] == round(9225 * 0.05)
    assert counts["truncated"] == 0 and manifest["prompt_style"] == "alpaca"
    assert [r["reason"] for r in manifest["dropped_rows"]] == ["empty output"] * 4
    assert manifest["dropped_rows"][0]["where"].endswith("alpaca_random_9k.json: row 1462")
    assert 0.3 < manifest["trained_token_share"] < 0.7
    check_prepared(train + test, tokenizer, manifest)
    assert all(int(e["input_ids"][0]) == tokenizer.bos_id for e in train)
    # tokenization throughput: the whole 9k sample well within budget (52k Alpaca rows = 5.7x this)
    print(f"alpaca 9k sample, SentencePiece: {manifest['seconds']} s wall, {cpu_seconds:.1f} s CPU")
    assert cpu_seconds < 60


def test_mask_inputs_false_and_drop_truncation(shared_dir, llama_dir, tmp_path):
    path = shared_dir / "datasets" / "alpaca" / "alpaca_random_9k.json"
    rows = list(itertools.islice(iter_records(path), 300))
    manifest = prepare(rows, name="alpaca", source_files=[path], checkpoint_dir=llama_dir, destination_path=tmp_path,
                       mask_inputs=False, truncation="drop", max_seq_length=128, test_split_fraction=0.1)
    tokenizer = Tokenizer(llama_dir)
    train, test, _ = load_prepared(tmp_path)
    check_prepared(train + test, tokenizer, manifest)
    dropped = manifest["counts"]["dropped"]["longer than max_seq_length"]
    assert dropped > 0 and manifest["counts"]["truncated"] == 0
    assert len(train) + len(test) + dropped == 300
    assert all(torch.equal(e["labels"], e["input_ids"]) for e in train)
    assert manifest["masking"] == "every token trained"


def test_truncate_keeps_eos_on_short_windows(shared_dir, smollm2_dir, tmp_path):
    path = shared_dir / "datasets" / "alpaca" / "alpaca_random_9k.json"
    rows = list(itertools.islice(iter_records(path), 200))
    manifest = prepare(rows, name="alpaca", source_files=[path], checkpoint_dir=smollm2_dir, destination_path=tmp_path,
                       max_seq_length=64, prompt_style="chatml")
    train, test, _ = load_prepared(tmp_path)
    check_prepared(train + test, Tokenizer(smollm2_dir), manifest)
    truncated = [e for e in train + test if e["truncated"]]
    assert truncated and all(len(e["input_ids"]) == 64 for e in truncated)
    assert manifest["counts"]["truncated"] == len(truncated)


# ---- tokenization units ------------------------------------------------------------------------------------------
def test_whole_conversation_tokenized_once(smollm2_dir, llama_dir):
    """Tokens that merge across the prompt/answer boundary come out as when the model reads the whole text."""
    example = {"instruction": "Say hello.", "input": "", "output": "  Hello"}
    style = get_prompt_style("alpaca")
    prompt = style.prompt("Say hello.")
    for checkpoint in (smollm2_dir, llama_dir):
        tokenizer = Tokenizer(checkpoint)
        (ids, flags), = encode_segments(tokenizer, [training_segments(style, conversation(example))])
        whole = tokenizer.encode_ids(prompt + "  Hello")
        assert ids[:-1] == whole and ids[-1] == tokenizer.eos_id
        assert whole != tokenizer.encode_ids(prompt) + tokenizer.encode_ids("  Hello")  # separately: other tokens
        # the answer's tokens are trained, the prompt's are not; a straddling token counts as answer
        assert not any(flags[: len(tokenizer.encode_ids(prompt)) - 1]) and all(flags[-3:])


def test_special_tokens_by_id_and_message_text_stays_text(smollm2_dir, llama_dir):
    smol = Tokenizer(smollm2_dir)
    messages = [{"role": "user", "content": "Print <|im_end|> literally"},
                {"role": "assistant", "content": "<|im_end|>"}]
    (ids, flags), = encode_segments(smol, [training_segments(get_prompt_style("chatml"), messages)])
    im_start, im_end = smol.token_to_id("<|im_start|>"), smol.token_to_id("<|im_end|>")
    assert ids.count(im_start) == 2 and ids.count(im_end) == 2  # only the template's, not the ones users typed
    assert smol.decode(ids) == "<|im_start|>user\nPrint <|im_end|> literally<|im_end|>\n<|im_start|>assistant\n" \
                               "<|im_end|><|im_end|>"
    llama = Tokenizer(llama_dir)
    (ids, flags), = encode_segments(llama, [training_segments(get_prompt_style("llama2-chat"), messages * 2)])
    assert ids.count(llama.bos_id) == 2 and ids.count(llama.eos_id) == 2  # BOS/EOS per turn, inserted as ids
    assert ids[0] == llama.bos_id and flags[ids.index(llama.eos_id)]


def test_encode_prompt_matches_generation_text(smollm2_dir, llama_dir):
    smol = Tokenizer(smollm2_dir)
    text = get_prompt_style("smollm2").prompt("Hi")
    assert encode_prompt(smol, "smollm2", "Hi").tolist() == smol.encode(text).tolist()
    llama = Tokenizer(llama_dir)
    ids = encode_prompt(llama, "llama2-chat", "Hi").tolist()
    assert ids == [llama.bos_id] + llama.encode_ids("[INST] Hi [/INST]")
    ids = encode_prompt(llama, "zephyr", "Hi").tolist()  # </s> inside the prompt: an id, not text
    assert ids.count(llama.eos_id) == 1 and decode_with_specials(llama, ids) == "<s><|user|>\nHi</s>\n<|assistant|>\n"


def test_fit_to_length():
    eos = 2
    ids, flags = [1, 5, 6, 7, 8, 9, eos], [False, False, False, True, True, True, True]
    assert fit_to_length(ids, flags, 10, eos) == (ids, flags, "")
    assert fit_to_length(ids, flags, 6, eos) == ([1, 5, 6, 7, 8, eos], [False] * 3 + [True] * 3, "truncated")
    assert fit_to_length(ids, flags, 6, eos, "drop") == (None, None, "longer than max_seq_length")
    assert fit_to_length(ids, flags, 4, eos)[2] == "prompt longer than max_seq_length"  # EOS right after the prompt
    # multi-turn: the second prompt crosses the limit -> keep the complete first exchange
    ids = [1, 5, 7, eos, 5, 5, 5, 5, 8, eos]
    flags = [False, False, True, True, False, False, False, False, True, True]
    assert fit_to_length(ids, flags, 7, eos) == (ids[:4], flags[:4], "truncated")


# ---- reading and normalizing rows --------------------------------------------------------------------------------
def test_normalize_layouts():
    assert normalize({"instruction": "Q", "input": None, "output": 42}, source="d") == \
        {"instruction": "Q", "input": "", "output": "42", "source": "d"}
    lima = normalize({"conversations": ["q1", "a1", "q2", "a2"], "source": "stackexchange"})
    assert lima["instruction"] == "q1" and lima["output"] == "a1" and lima["source"] == "stackexchange"
    assert [m["role"] for m in lima["messages"]] == ["user", "assistant"] * 2
    sharegpt = normalize({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                                            {"from": "human", "value": "unanswered"}], "id": 7, "score": "4.5"})
    assert "messages" not in sharegpt and sharegpt["output"] == "a"
    assert sharegpt["id"] == "7" and sharegpt["score"] == 4.5
    system = normalize({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "a"}]})
    assert system["messages"][0] == {"role": "system", "content": "S"} and system["instruction"] == "q"
    extra = normalize({"instruction": "q", "output": "a", "category": "qa", "tags": ["x"], "metadata": {"k": 1}})
    assert extra["metadata"] == {"k": 1, "category": "qa", "tags": '["x"]'}


@pytest.mark.parametrize("record, reason", [
    ({"instruction": "q", "output": "  \n"}, "empty output"),
    ({"instruction": "q"}, "missing output"),
    ({"output": "a"}, "missing instruction"),
    ({"instruction": "", "output": "a"}, "empty instruction"),
    ({"instruction": ["q"], "output": "a"}, "instruction is not text"),
    ({"conversations": ["q"]}, "conversation has no assistant answer"),
    ({"conversations": ["q", ""]}, "empty output"),
    ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"},
                   {"role": "assistant", "content": "a"}]}, "roles do not alternate"),
    ({"messages": [{"role": "wizard", "content": "a"}]}, "unknown role"),
    ({"instruction": "q", "output": "a", "score": "high"}, "score is not a number"),
])
def test_bad_records(record, reason):
    with pytest.raises(BadRecord, match=reason):
        normalize(record)


def test_read_formats(tmp_path):
    (tmp_path / "a.csv").write_text('\ufeffoutput,instruction\n"two\nlines, quoted",q\n\n"x",y\n', encoding="utf-8")
    assert load_records(tmp_path / "a.csv") == [{"output": "two\nlines, quoted", "instruction": "q"},
                                                {"output": "x", "instruction": "y"}]
    wheres = [w for w, _ in iter_records(tmp_path / "a.csv")]
    assert wheres == [f"{tmp_path / 'a.csv'}: row 1 (line 2)", f"{tmp_path / 'a.csv'}: row 2 (line 5)"]
    # JSON lines may hold U+2028, which str.splitlines() would split on
    (tmp_path / "b.json").write_text('{"q": "a\u2028b", "a": "c"}\n\n{"q": "d", "a": "e"}\n', encoding="utf-8")
    assert load_records(tmp_path / "b.json", columns={"instruction": "q", "output": "a"}) == [
        {"instruction": "a\u2028b", "output": "c"}, {"instruction": "d", "output": "e"}]
    (tmp_path / "c.json").write_text('{"data": [{"instruction": "q", "output": "a"}]}')
    assert load_records(tmp_path / "c.json", format="json") == [{"instruction": "q", "output": "a"}]
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(b'{"instruction": "q", "output": "a"}\n'))  # oasst1's files
    assert load_records(tmp_path / "d.jsonl.gz") == [{"instruction": "q", "output": "a"}]


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", "", "the file is empty"),
    ("blank.csv", "\n\n", "the file is empty"),
    ("latin1.jsonl", '{"instruction": "caf\xe9"}\n'.encode("latin-1"), "line 1: not valid UTF-8"),
    ("late.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": "\xff"}\n', "line 3: not valid UTF-8"),
    ("broken.jsonl", '{"instruction": "q", "output": "a"}\n{"instruction": "q", "output"\n', "line 2: not valid JSON"),
    ("list.jsonl", '["q", "a"]\n', "line 1: expected a JSON object"),
    ("broken.json", '[{"instruction": "q",\n "output": }]', "line 2: not valid JSON"),
    ("quote.csv", 'instruction,output\nq,"a"b\n', "row 1 (line 2): malformed CSV"),
    ("open.csv", 'instruction,output\nq,a\nq2,"never closed\n', "row 2 (line 3): malformed CSV"),
    ("fields.csv", 'instruction,output\nq,a,extra\n', "row 1 (line 2): 3 fields, but the header has 2"),
    ("dup.csv", 'instruction,instruction,output\nq,q,a\n', "names column 'instruction' twice"),
    ("nocol.csv", 'question,output\nq,a\n', "no 'instruction' column (found: 'question', 'output')"),
    ("nofield.jsonl", '{"instruction": "q", "answer": "a"}\n', "row 1 has no 'output' field"),
    ("data.txt", "x", "cannot tell the file format"),
])
def test_unreadable_files_name_file_and_row(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError) as e:
        load_records(path, required=("instruction", "output"))
    assert str(path) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)


def test_column_mapping_errors(tmp_path):
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(UserError, match="no 'reply' field to use as 'output'"):
        load_records(tmp_path / "qa.jsonl", columns={"instruction": "question", "output": "reply"},
                     required=("instruction", "output"))


def test_bad_rows_skipped_and_counted_or_fatal(llama_dir, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"instruction": "q1", "output": "a1"}\n{"instruction": "q2", "output": ""}\n'
                    '{"instruction": "q3", "output": "a3"}\n')
    manifest = prepare(iter_records(path), name="rows", source_files=[path], checkpoint_dir=llama_dir,
                       destination_path=tmp_path / "out", test_split_fraction=0)
    assert manifest["counts"]["dropped"] == {"empty output": 1} and manifest["counts"]["train"] == 2
    assert manifest["dropped_rows"] == [{"where": f"{path}: line 2", "reason": "empty output"}]
    with pytest.raises(UserError, match=re.escape(f"{path}: line 2: empty output; fix the row")):
        prepare(iter_records(path), name="rows", source_files=[path], checkpoint_dir=llama_dir,
                destination_path=tmp_path / "strict", on_bad_row="error")
    assert not (tmp_path / "strict").exists()  # nothing half-written


def test_split_is_seeded():
    rows = list(range(100))
    train, test = split_examples(rows, 0.2, seed=1)
    assert len(test) == 20 and sorted(train + test) == rows and train == sorted(train)
    assert split_examples(rows, 0.2, seed=1) == (train, test)
    assert split_examples(rows, 0.2, seed=2)[1] != test


def test_load_prepared_refuses_missing_and_foreign_data(lima, llama_dir, tmp_path):
    with pytest.raises(UserError, match="no train.pt; prepare it first"):
        load_prepared(tmp_path)
    out, _ = lima
    with pytest.raises(UserError, match="prepared with another tokenizer"):
        load_prepared(out, Tokenizer(llama_dir))
    train, test, manifest = load_prepared(out)
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] == manifest["fingerprint"]
    example = train[0]
    assert {"input_ids", "labels", "source", "instruction", "input", "output", "id", "truncated"} <= set(example)
    assert isinstance(example["id"], str) and example["source"] == "lima"


def test_prepare_needs_a_tokenizer(tmp_path):
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(UserError, match="no tokenizer.model or tokenizer.json"):
        prepare([], name="x", source_files=[], checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(UserError, match="--checkpoint_dir is required"):
        prepare([], name="x", source_files=[])
