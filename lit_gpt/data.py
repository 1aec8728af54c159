"""The instruction-data pipeline, shared by every scripts/prepare_*.py:

    source file -> records (`iter_records` / `load_records`: JSON, JSONL, CSV, with a column mapping)
    -> normalized examples (`normalize`: instruction, input, output, source, optional messages, id, score, metadata)
    -> validation (bad rows skipped and counted, or an error naming file and row)
    -> seeded train/test split -> prompt style (`lit_gpt.prompts`) -> one tokenization per conversation
    -> labels (prompt masked, every example ends with a trained EOS, truncation) -> train.pt / test.pt + manifest.json

A normalized example is a dict with `instruction`, `input`, `output`, `source` (str), `id` (str) and, when present,
`messages` (a multi-turn conversation, [{"role", "content"}], the first exchange mirrored in instruction/output),
`score` (float) and `metadata` (the source row's other fields). Dataset tools (mixing, scoring, filtering) work on
this layer: `load_records(path)` then `normalize(record)`.

Prepared data (`prepare`, read back with `load_prepared`): train.pt and test.pt each hold `torch.save(list[dict])`,
every dict a normalized example plus `input_ids` and `labels` (1-D int64 of equal length, -100 where masked, the last
trained label the tokenizer's EOS) and `truncated` (bool). manifest.json beside them records counts, dropped rows with
their reason, token-length percentiles and every setting, and a `fingerprint` over the settings, the tokenizer and the
input file: a preparation is redone exactly when one of them changed.
"""

import contextlib
import csv
import functools
import gzip
import hashlib
import io
import json
import random
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Optional, Union

import numpy as np
import torch

from lit_gpt.prompts import PromptStyle, Special, default_prompt_style, get_prompt_style
from lit_gpt.utils import UserError, atomic_path, atomic_torch_save, atomic_write_text

IGNORE_INDEX = -100
PIPELINE_VERSION = 1  # bump when a change to this file changes what prepared data contains
FIELDS = ("instruction", "input", "output", "source", "messages", "id", "score")
CONVERSATION_KEYS = ("messages", "conversations")
ROLES = {"user": "user", "human": "user", "prompter": "user", "assistant": "assistant", "gpt": "assistant",
         "bot": "assistant", "model": "assistant", "system": "system"}
MANIFEST_FILE = "manifest.json"
SHOWN_DROPPED_ROWS = 20  # the manifest lists this many dropped rows with their location


class BadRecord(ValueError):
    """A row that cannot become an example. The message is the short reason counted in the manifest."""


# ---- reading source files ----------------------------------------------------------------------------------------
def read_text(path: "str | Path") -> str:
    """The file as text: UTF-8 (a BOM is allowed), .gz decompressed; one-line errors for missing, empty, non-UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise UserError(f"{path}: not a valid gzip file ({e}); download it again") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
                        "save the file as UTF-8") from None
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    return text


def guess_format(path: "str | Path") -> str:
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":  # a JSON array, or (as many Hub files named .json are) one object per line
        return "json" if read_text(path).lstrip().startswith("[") else "jsonl"
    raise UserError(f"{path}: cannot tell the file format from its name; pass --format json, jsonl or csv")


def iter_records(path: "str | Path", format: Optional[str] = None, columns: Optional[dict] = None,
                 required: Iterable[str] = ()) -> Iterator[tuple[str, dict]]:
    """Yields (where, record) for each row: `where` names file and row for messages ("data.csv: row 3 (line 5)").

    format: "json" (an array of objects), "jsonl" (one object per line) or "csv" (with a header row; quoted fields
    may span lines); None guesses from the file name. columns maps our field names to the file's column names, e.g.
    {"instruction": "question", "output": "answer"}. required: fields the first row must have (after the mapping;
    rows with a conversation under "messages"/"conversations" need none); a missing one is a one-line error."""
    path = Path(path)
    format = format or guess_format(path)
    columns = dict(columns or {})
    if format == "csv":
        rows = _csv_rows(path)
    elif format == "json":
        rows = _json_rows(path)
    elif format == "jsonl":
        rows = _jsonl_rows(path)
    else:
        raise UserError(f"{path}: unknown format {format!r}; use json, jsonl or csv")
    first = True
    for where, row in rows:
        if columns:
            mapped = {field: row[column] for field, column in columns.items() if column in row}
            row = {k: v for k, v in row.items() if k not in columns.values()}
            row.update(mapped)
        if first:
            first = False
            _check_columns(path, row, columns, required, format)
        yield where, row


def load_records(path: "str | Path", format: Optional[str] = None, columns: Optional[dict] = None,
                 required: Iterable[str] = ()) -> list[dict]:
    """All rows of a JSON/JSONL/CSV file as dicts (see `iter_records`), e.g. for filtering or mixing datasets."""
    return [record for _, record in iter_records(path, format, columns, required)]


def _check_columns(path: Path, row: dict, columns: dict, required: Iterable[str], format: str) -> None:
    if any(key in row for key in CONVERSATION_KEYS):
        return
    for field in required:
        if field not in row:
            found = ", ".join(repr(k) for k in row) or "none"
            what = "column" if format == "csv" else "field"
            if field in columns:
                raise UserError(f"{path}: no {columns[field]!r} {what} to use as {field!r} (found: {found}); "
                                "fix the --columns mapping")
            raise UserError(f"{path}: row 1 has no {field!r} {what} (found: {found}); rename it in the file or map "
                            f"it with --columns '{{\"{field}\": \"<{what} name>\"}}'")


def _csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except csv.Error as e:
        raise UserError(f"{path}: line 1: malformed CSV header ({e})") from None
    header = [h.strip() for h in header]
    duplicates = [h for h, n in Counter(header).items() if n > 1]
    if duplicates:
        raise UserError(f"{path}: line 1: the header names column {duplicates[0]!r} twice; rename one of them")
    row_number, line = 0, reader.line_num
    while True:
        start = line + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise UserError(f"{path}: row {row_number + 1} (line {start}): malformed CSV ({e}); a field with commas, "
                            'quotes or newlines must be quoted as "...", with quotes inside doubled ("")') from None
        line = reader.line_num
        if not values:
            continue  # blank line
        row_number += 1
        if len(values) != len(header):
            raise UserError(f"{path}: row {row_number} (line {start}): {len(values)} fields, but the header has "
                            f"{len(header)}; quote fields that contain commas")
        yield f"{path}: row {row_number} (line {start})", dict(zip(header, values))


def _json_rows(path: Path) -> Iterator[tuple[str, dict]]:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg}); fix the file") from None
    if isinstance(data, dict):  # {"data": [...]} / {"train": [...]}: the one list of rows inside
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise UserError(f"{path}: expected a JSON array of rows (or an object holding one)")
        data = lists[0]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of rows, found {type(data).__name__}")
    for i, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise UserError(f"{path}: row {i}: expected a JSON object, found {type(row).__name__}")
        yield f"{path}: row {i}", row


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    text = read_text(path)
    # split on \n only: JSON strings may contain U+2028 and other characters str.splitlines() would split on
    for line_number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {line_number}: not valid JSON ({e.msg}); fix or delete the line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {line_number}: expected a JSON object, found {type(row).__name__}")
        yield f"{path}: line {line_number}", row


# ---- normalized examples -----------------------------------------------------------------------------------------
def normalize(record: dict, source: Optional[str] = None) -> dict:
    """One source row -> a normalized example; raises BadRecord (a ValueError) with a short reason for a row that
    cannot be one (missing or empty instruction/output, a conversation that does not alternate, ...).

    Understands `instruction`/`input`/`output` rows and conversations under `messages` or `conversations` (a list
    of {"role", "content"} dicts, ShareGPT's {"from", "value"}, or plain strings alternating user/assistant as in
    LIMA). `source` (row field, else the argument, else "unknown"), `id`, `score` are kept; the row's other fields
    go to `metadata`. Texts are kept as they are; only the checks ignore surrounding whitespace."""
    if not isinstance(record, dict):
        raise BadRecord("not a JSON object")
    conversation = next((record[k] for k in CONVERSATION_KEYS if record.get(k) is not None), None)
    if conversation is not None:
        messages = _normalize_messages(conversation)
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        first = messages[1:] if system is not None else messages
        example = {"instruction": first[0]["content"], "input": "", "output": first[1]["content"]}
        if len(first) > 2 or system is not None:
            example["messages"] = messages
    else:
        example = {"instruction": _text_field(record, "instruction"), "input": _text_field(record, "input", False),
                   "output": _text_field(record, "output")}
    row_source = record.get("source")
    example["source"] = str(row_source) if row_source not in (None, "") else (source or "unknown")
    if record.get("id") not in (None, ""):
        example["id"] = str(record["id"])
    if record.get("score") not in (None, ""):
        try:
            example["score"] = float(record["score"])
        except (TypeError, ValueError):
            raise BadRecord("score is not a number") from None
    metadata = dict(record.get("metadata") or {}) if isinstance(record.get("metadata"), dict) else {}
    metadata.update({k: v for k, v in record.items() if k not in FIELDS and k not in CONVERSATION_KEYS
                     and k != "metadata" and v is not None})
    if metadata:
        example["metadata"] = {str(k): _plain_value(v) for k, v in metadata.items()}
    return example


def _text_field(record: dict, field: str, required: bool = True) -> str:
    value = record.get(field)
    if value is None:
        if required:
            raise BadRecord(f"missing {field}")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRecord(f"{field} is not text")
    value = str(value)
    if required and not value.strip():
        raise BadRecord(f"empty {field}")
    return value


def _normalize_messages(conversation: Any) -> list[dict]:
    if not isinstance(conversation, list) or not conversation:
        raise BadRecord("conversation is not a non-empty list")
    messages = []
    for i, message in enumerate(conversation):
        if isinstance(message, str):  # LIMA: user, assistant, user, ...
            role, content = ("user", "assistant")[i % 2], message
        elif isinstance(message, dict):
            role = ROLES.get(str(message.get("role", message.get("from", ""))).lower())
            content = message.get("content", message.get("value", message.get("text")))
            if role is None:
                raise BadRecord(f"message {i + 1} has an unknown role {message.get('role', message.get('from'))!r}")
        else:
            raise BadRecord(f"message {i + 1} is not text or an object")
        if not isinstance(content, str):
            raise BadRecord(f"message {i + 1} has no text")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] == "user":  # a trailing question without an answer teaches nothing
        messages.pop()
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if len(body) < 2:
        raise BadRecord("conversation has no assistant answer")
    for i, message in enumerate(body):
        expected = ("user", "assistant")[i % 2]
        if message["role"] != expected:
            raise BadRecord(f"conversation roles do not alternate user/assistant "
                            f"(message {i + 1} is {message['role']})")
        if not message["content"].strip():
            raise BadRecord("empty output" if expected == "assistant" else "empty instruction")
    return messages


def _plain_value(value: Any) -> Any:
    """Metadata stays loadable with torch.load(weights_only=True): str/int/float/bool, anything else as JSON text."""
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False)


def conversation(example: dict) -> list[dict]:
    """The messages a prompt style renders for an example (single-turn rows keep `input` for Alpaca's slot)."""
    if example.get("messages"):
        return example["messages"]
    return [{"role": "user", "content": example["instruction"], "input": example.get("input", "")},
            {"role": "assistant", "content": example["output"]}]


# ---- tokenization and labels -------------------------------------------------------------------------------------
def training_segments(style: PromptStyle, messages: list[dict]) -> list[tuple[str, bool]]:
    """The rendered conversation without the untrained text after the last answer (the newline ChatML puts after
    <|im_end|>): it would only be masked tokens after the EOS."""
    segments = style.render(messages)
    while segments and not segments[-1][1]:
        segments.pop()
    return segments


@contextlib.contextmanager
def _message_text_is_text(tokenizer) -> Iterator[None]:
    """Special tokens are inserted by id at the style's segment boundaries; inside message text a "<|im_end|>" written
    by a user stays text and cannot end a turn. (SentencePiece never parses special-token text anyway.)"""
    processor = tokenizer.processor if tokenizer.backend == "huggingface" else None
    previous = getattr(processor, "encode_special_tokens", None)
    if previous is not None:
        processor.encode_special_tokens = True
    try:
        yield
    finally:
        if previous is not None:
            processor.encode_special_tokens = previous


def _special_id(tokenizer, special: Special, cache: dict) -> Optional[int]:
    key = (special, special.kind)
    if key not in cache:
        if special.kind == "bos":
            cache[key] = tokenizer.bos_id
        elif special.kind == "eos":
            if tokenizer.eos_id is None:
                raise UserError(f"{tokenizer.checkpoint_dir}: the tokenizer has no EOS token, so answers cannot be "
                                "terminated; check tokenizer_config.json / generation_config.json")
            cache[key] = tokenizer.eos_id
        else:
            cache[key] = tokenizer.token_to_id(str(special))
    return cache[key]


def encode_segments(tokenizer, segment_lists: list[list[tuple[str, bool]]]) -> list[tuple[list[int], list[bool]]]:
    """Token ids and per-token "trained" flags of rendered conversations, batched.

    Special tokens are inserted by id; the text between two of them is tokenized in one piece (one batched call for
    all conversations), and a token is trained when its character span overlaps a trained segment. Tokenizing
    prompt and answer separately would differ from what the model sees: BPE and SentencePiece merge across that
    boundary. SentencePiece gives every piece of text its dummy-prefix space, as Meta's Llama-2-chat encoding and the
    legacy HF Llama tokenizer do."""
    cache: dict = {}
    runs: list[str] = []
    plans = []
    for segments in segment_lists:
        plan: list = []  # (special id, trained) or (run index, trained spans)
        buffer: list[str] = []
        spans: list[tuple[int, int]] = []
        length = 0
        for text, trained in segments:
            if isinstance(text, Special):
                token_id = _special_id(tokenizer, text, cache)
                if token_id is not None:
                    if buffer:
                        runs.append("".join(buffer))
                        plan.append((len(runs) - 1, spans))
                        buffer, spans, length = [], [], 0
                    plan.append((token_id, trained))
                    continue
                if text.kind == "bos":  # a model without BOS
                    continue
            if not text:
                continue
            if trained:
                if spans and spans[-1][1] == length:
                    spans[-1] = (spans[-1][0], length + len(text))
                else:
                    spans.append((length, length + len(text)))
            buffer.append(str(text))
            length += len(text)
        if buffer:
            runs.append("".join(buffer))
            plan.append((len(runs) - 1, spans))
        plans.append(plan)

    with _message_text_is_text(tokenizer):
        encoded = tokenizer.encode_with_offsets(runs) if runs else []
    results = []
    for plan in plans:
        ids: list[int] = []
        flags: list[bool] = []
        for item in plan:
            if isinstance(item[1], bool):
                ids.append(item[0])
                flags.append(item[1])
            else:
                run_ids, offsets = encoded[item[0]]
                ids.extend(run_ids)
                flags.extend(_trained_flags(offsets, item[1], len(runs[item[0]])))
        results.append((ids, flags))
    return results


def _trained_flags(offsets: list[tuple[int, int]], spans: list[tuple[int, int]], text_length: int) -> list[bool]:
    if not spans:
        return [False] * len(offsets)
    if spans == [(0, text_length)]:
        return [True] * len(offsets)
    # a zero-width span (a byte piece of a multi-byte character, a dummy prefix) belongs to the character it sits on
    if len(spans) == 1:
        (start, end), = spans
        return [s < end and (e if e > s else s + 1) > start for s, e in offsets]
    return [any(s < end and (e if e > s else s + 1) > start for start, end in spans) for s, e in offsets]


def _with_bos_and_eos(tokenizer, ids: list[int], flags: list[bool]) -> tuple[list[int], list[bool]]:
    """BOS in front iff the model uses one and the style did not put it there; a trained EOS at the end iff the style's
    last trained token is not the tokenizer's EOS (ChatML's <|im_end|> on a tokenizer whose EOS is another token)."""
    if tokenizer.use_bos and tokenizer.bos_id is not None and (not ids or ids[0] != tokenizer.bos_id):
        ids, flags = [tokenizer.bos_id] + ids, [False] + flags
    if ids and ids[-1] != tokenizer.eos_id:
        ids, flags = ids + [tokenizer.eos_id], flags + [True]
    return ids, flags


def fit_to_length(ids: list[int], flags: list[bool], max_seq_length: int, eos_id: int,
                  truncation: str = "truncate") -> tuple[Optional[list[int]], Optional[list[bool]], str]:
    """(ids, flags, status) with status "" (fits), "truncated", or the reason an over-long example is dropped.

    truncate: cut the last answer that crosses the limit and end it with EOS; when no answer token would be left
    (the prompt alone fills the window) keep the complete earlier turns of a conversation, or drop the example:
    an EOS right after the prompt would teach the model to answer nothing."""
    if len(ids) <= max_seq_length:
        return ids, flags, ""
    if truncation == "drop":
        return None, None, "longer than max_seq_length"
    cut = max_seq_length - 1  # room for the EOS
    runs = []  # [start, end) of each trained stretch
    for i, flag in enumerate(flags):
        if flag and (i == 0 or not flags[i - 1]):
            runs.append([i, i + 1])
        elif flag:
            runs[-1][1] = i + 1
    partial = any(start < cut and end > max_seq_length for start, end in runs)
    if partial:
        return ids[:cut] + [eos_id], flags[:cut] + [True], "truncated"
    complete = [end for _, end in runs if end <= max_seq_length]
    if not complete:
        return None, None, "prompt longer than max_seq_length"
    end = complete[-1]
    ids, flags = ids[:end], flags[:end]
    if ids[-1] != eos_id:
        ids[-1] = eos_id
    return ids, flags, "truncated"


def tokenize_examples(examples: list[dict], tokenizer, style: PromptStyle, max_seq_length: int,
                      mask_inputs: bool = True, truncation: str = "truncate", batch_size: int = 512,
                      progress: Optional[str] = None) -> tuple[list[dict], Counter]:
    """Adds input_ids/labels/truncated to each example; returns (kept examples, Counter of drop reasons)."""
    from tqdm import tqdm

    kept, dropped = [], Counter()
    bar = tqdm(total=len(examples), desc=progress, unit="rows", disable=None if progress else True, file=sys.stderr)
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin: begin + batch_size]
        encoded = encode_segments(tokenizer, [training_segments(style, conversation(ex)) for ex in chunk])
        for example, (ids, flags) in zip(chunk, encoded):
            ids, flags = _with_bos_and_eos(tokenizer, ids, flags)
            ids, flags, status = fit_to_length(ids, flags, max_seq_length, tokenizer.eos_id, truncation)
            if ids is None:
                dropped[status] += 1
                continue
            labels = [i if f else IGNORE_INDEX for i, f in zip(ids, flags)] if mask_inputs else ids
            kept.append({**example, "input_ids": _long_tensor(ids), "labels": _long_tensor(labels),
                         "truncated": status == "truncated"})
        bar.update(len(chunk))
    bar.close()
    return kept, dropped


def _long_tensor(ids: list[int]) -> torch.Tensor:
    return torch.from_numpy(np.array(ids, dtype=np.int64))  # several times faster than torch.tensor(list)


def encode_prompt(tokenizer, style: Union[str, PromptStyle], prompt: Union[str, list[dict]], input: str = "",
                  device: Optional[torch.device] = None) -> torch.Tensor:
    """Ids a model is prompted with: an instruction (+ input), or a conversation ending with a user message, rendered
    in `style` up to where the answer starts. Special tokens by id, so it works for SentencePiece tokenizers too."""
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt, "input": input}]
    segments = get_prompt_style(style).render(messages, add_generation_prompt=True)
    (ids, _), = encode_segments(tokenizer, [segments])
    if tokenizer.use_bos and tokenizer.bos_id is not None and (not ids or ids[0] != tokenizer.bos_id):
        ids = [tokenizer.bos_id] + ids
    return torch.tensor(ids, dtype=torch.long, device=device)


def render_text(tokenizer, segments: list[tuple[str, bool]]) -> str:
    """The rendered text with BOS/EOS placeholders spelled as this tokenizer spells them (what the ids decode to)."""
    parts = []
    for text, _ in segments:
        if isinstance(text, Special) and text.kind in ("bos", "eos"):
            token_id = tokenizer.bos_id if text.kind == "bos" else tokenizer.eos_id
            if token_id is not None:
                parts.append(tokenizer.id_to_token(token_id))
        else:
            parts.append(str(text))
    return "".join(parts)


def decode_with_specials(tokenizer, ids: Iterable[int]) -> str:
    """Decoded text with special tokens spelled out. SentencePiece's decode drops them, so its text between two special
    tokens is decoded on its own (as it was encoded) and the tokens' pieces put in between."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    if tokenizer.backend != "sentencepiece":
        return tokenizer.decode(ids)
    controls = _control_ids(tokenizer)
    if controls.isdisjoint(ids):
        return tokenizer.decode(ids)
    parts, run = [], []
    for i in ids:
        if i in controls:
            if run:
                parts.append(tokenizer.decode(run))
                run = []
            parts.append(tokenizer.id_to_token(i))
        else:
            run.append(i)
    if run:
        parts.append(tokenizer.decode(run))
    return "".join(parts)


@functools.lru_cache(maxsize=8)
def _control_ids(tokenizer) -> frozenset:
    return frozenset(i for i in range(tokenizer.vocab_size) if tokenizer.processor.is_control(i))


# ---- split, statistics -------------------------------------------------------------------------------------------
def split_examples(examples: list, test_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded random split; both parts keep the source order."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = round(len(examples) * test_fraction)
    test_index = set(order[:n_test])
    return ([e for i, e in enumerate(examples) if i not in test_index],
            [e for i, e in enumerate(examples) if i in test_index])


def length_stats(examples: list[dict]) -> dict:
    lengths = sorted(len(e["input_ids"]) for e in examples)
    if not lengths:
        return {}

    def percentile(p: float) -> int:
        return lengths[min(len(lengths) - 1, int(p / 100 * len(lengths)))]

    return {"min": lengths[0], "p50": percentile(50), "p90": percentile(90), "p95": percentile(95),
            "p99": percentile(99), "max": lengths[-1], "mean": round(sum(lengths) / len(lengths), 1)}


def trained_token_share(examples: list[dict]) -> float:
    total = sum(len(e["labels"]) for e in examples)
    trained = sum(int((e["labels"] != IGNORE_INDEX).sum()) for e in examples)
    return round(trained / total, 4) if total else 0.0


def file_sha256(path: "str | Path") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- the preparation ---------------------------------------------------------------------------------------------
def prepare(
    records: Iterable[tuple[str, dict]],
    name: str,
    source_files: list[Path],
    checkpoint_dir: Optional[Path] = None,
    destination_path: Optional[Path] = None,
    max_seq_length: Optional[int] = None,
    test_split_fraction: float = 0.05,
    seed: int = 42,
    prompt_style: Optional[str] = None,
    mask_inputs: bool = True,
    truncation: Literal["truncate", "drop"] = "truncate",
    on_bad_row: Literal["skip", "error"] = "skip",
    force: bool = False,
    options: Optional[dict] = None,
) -> dict:
    """Prepares instruction data for fine-tuning: tokenized train.pt/test.pt and manifest.json.

    Args:
        records: (where, row) pairs from a source adapter; read only when the preparation is not up to date
        name: dataset name (default destination data/<name>, default source of rows without one, ids)
        source_files: the input files; their hashes decide whether an earlier preparation can be reused
        checkpoint_dir: the model's checkpoint directory; its tokenizer and block size are used (required)
        destination_path: where train.pt, test.pt and manifest.json go (default: data/<name>)
        max_seq_length: longest example in tokens (default: the model's block size)
        test_split_fraction: share of the rows held out in test.pt
        seed: seed of the train/test split
        prompt_style: how rows are rendered, e.g. alpaca, chatml, llama2-chat (default: the checkpoint's own chat
            format for instruct models, alpaca for base models)
        mask_inputs: train on the answers only (false also trains on the prompt tokens, as Lit-GPT did)
        truncation: what happens to an example longer than max_seq_length: truncate its answer (keeping the EOS) or
            drop it; both are counted in the manifest
        on_bad_row: skip rows that cannot be used (empty output, ...; counted in the manifest) or stop with an error
        force: prepare again even when the destination is up to date
        options: the adapter's own settings, recorded in the manifest and fingerprint
    """
    from lit_gpt.tokenizer import Tokenizer

    started = time.perf_counter()
    if checkpoint_dir is None:
        raise UserError("--checkpoint_dir is required: tokenization is model-specific "
                        "(e.g. --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct)")
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise UserError(f"{checkpoint_dir}: checkpoint directory not found; download it with "
                        "`python scripts/download.py --repo_id ORG/NAME` (--tokenizer_only is enough for data)")
    if truncation not in ("truncate", "drop"):
        raise UserError(f"--truncation {truncation!r}: use truncate or drop")
    if on_bad_row not in ("skip", "error"):
        raise UserError(f"--on_bad_row {on_bad_row!r}: use skip or error")
    if not 0 <= test_split_fraction < 1:
        raise UserError(f"--test_split_fraction {test_split_fraction}: must be at least 0 and below 1")
    tokenizer = Tokenizer(checkpoint_dir)
    style = get_prompt_style(prompt_style) if prompt_style else default_prompt_style(checkpoint_dir)
    if max_seq_length is None:
        max_seq_length = _block_size(checkpoint_dir)
    if max_seq_length < 2:
        raise UserError(f"--max_seq_length {max_seq_length}: too short to hold a prompt and an answer")
    destination_path = Path(destination_path) if destination_path is not None else Path("data") / name
    source_files = [Path(p) for p in source_files]

    settings = {
        "pipeline_version": PIPELINE_VERSION, "name": name,
        "source_files": [{"path": str(p), "sha256": file_sha256(p)} for p in source_files],
        "options": options or {}, "tokenizer_fingerprint": tokenizer.fingerprint, "prompt_style": style.name,
        "prompt_style_fingerprint": style.fingerprint, "max_seq_length": max_seq_length, "mask_inputs": mask_inputs,
        "truncation": truncation, "test_split_fraction": test_split_fraction, "seed": seed, "on_bad_row": on_bad_row,
    }
    fingerprint_settings = {**settings, "source_files": sorted(f["sha256"] for f in settings["source_files"])}
    fingerprint = hashlib.sha256(json.dumps(fingerprint_settings, sort_keys=True).encode()).hexdigest()[:16]
    previous = _read_manifest(destination_path)
    if (not force and previous.get("fingerprint") == fingerprint and (destination_path / "train.pt").is_file()
            and (destination_path / "test.pt").is_file()):
        print(f"{destination_path}: already prepared from the same input with the same tokenizer, prompt style and "
              f"settings (fingerprint {fingerprint}); nothing to do (--force true prepares it again)")
        return previous

    examples, dropped, dropped_rows, rows_in = _collect(records, name, on_bad_row)
    if not examples:
        reasons = ", ".join(f"{n} {reason}" for reason, n in dropped.items()) or "no rows"
        raise UserError(f"{', '.join(map(str, source_files))}: no usable rows ({reasons})")
    train_rows, test_rows = split_examples(examples, test_split_fraction, seed)
    train, train_dropped = tokenize_examples(train_rows, tokenizer, style, max_seq_length, mask_inputs, truncation,
                                             progress="tokenizing train")
    test, test_dropped = tokenize_examples(test_rows, tokenizer, style, max_seq_length, mask_inputs, truncation,
                                           progress="tokenizing test")
    if not train:
        raise UserError(f"{', '.join(map(str, source_files))}: every training example is longer than "
                        f"max_seq_length={max_seq_length} ({dict(train_dropped)}); raise --max_seq_length")
    dropped.update(train_dropped)
    dropped.update(test_dropped)
    kept = train + test

    manifest = {
        **settings,
        "fingerprint": fingerprint,
        "tokenizer_dir": str(checkpoint_dir.resolve()),
        "tokenizer_backend": tokenizer.backend,
        "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "use_bos": tokenizer.use_bos,
        "masking": "prompt tokens masked (-100), answers and their EOS trained" if mask_inputs
                   else "every token trained",
        "counts": {
            "rows_in": rows_in, "rows_valid": len(examples), "rows_out": len(kept), "train": len(train),
            "test": len(test), "dropped": dict(sorted(dropped.items())), "truncated": sum(e["truncated"] for e in kept),
            "multi_turn": sum(1 for e in kept if e.get("messages")),
        },
        "sources": dict(sorted(Counter(e["source"] for e in kept).items())),
        "token_lengths": length_stats(kept),
        "trained_token_share": trained_token_share(kept),
        "dropped_rows": dropped_rows,
        "seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # the old manifest goes first: a crash half-way leaves no manifest, so the next run prepares everything again
    (destination_path / MANIFEST_FILE).unlink(missing_ok=True)
    atomic_torch_save(train, destination_path / "train.pt")
    atomic_torch_save(test, destination_path / "test.pt")
    atomic_write_text(destination_path / MANIFEST_FILE, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    counts = manifest["counts"]
    dropped_text = ", ".join(f"{n} {reason}" for reason, n in counts["dropped"].items()) or "none"
    print(f"{destination_path}: {counts['train']} train + {counts['test']} test examples from {rows_in} rows "
          f"(dropped: {dropped_text}; truncated: {counts['truncated']}); prompt style {style.name}, "
          f"max_seq_length {max_seq_length}, token lengths p50/p99/max "
          f"{manifest['token_lengths']['p50']}/{manifest['token_lengths']['p99']}/{manifest['token_lengths']['max']}; "
          f"{manifest['seconds']} s")
    return manifest


def _collect(records: Iterable[tuple[str, dict]], name: str, on_bad_row: str) -> tuple[list, Counter, list, int]:
    from tqdm import tqdm

    examples, dropped, dropped_rows = [], Counter(), []
    rows_in = 0
    for where, record in tqdm(records, desc="reading rows", unit="rows", disable=None, file=sys.stderr):
        rows_in += 1
        try:
            example = normalize(record, source=name)
        except BadRecord as e:
            if on_bad_row == "error":
                raise UserError(f"{where}: {e}; fix the row or pass --on_bad_row skip to drop such rows") from None
            dropped[str(e)] += 1
            if len(dropped_rows) < SHOWN_DROPPED_ROWS:
                dropped_rows.append({"where": where, "reason": str(e)})
            continue
        example.setdefault("id", f"{name}-{rows_in}")
        examples.append(example)
    return examples, dropped, dropped_rows, rows_in


def _block_size(checkpoint_dir: Path) -> int:
    from lit_gpt.config import Config

    try:
        return Config.from_checkpoint(checkpoint_dir).block_size
    except UserError as e:
        raise UserError(f"{e}; or pass --max_seq_length") from None


def _read_manifest(data_dir: Path) -> dict:
    path = Path(data_dir) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def load_prepared(data_dir: "str | Path", tokenizer=None) -> tuple[list[dict], list[dict], dict]:
    """(train examples, test examples, manifest) of a prepared dataset. With a tokenizer, refuses data prepared with
    another one (its ids would mean other tokens)."""
    data_dir = Path(data_dir)
    hint = "prepare it first, e.g. `python scripts/prepare_alpaca.py --checkpoint_dir <model> --destination_path " \
           f"{data_dir}`"
    for file in ("train.pt", "test.pt", MANIFEST_FILE):
        if not (data_dir / file).is_file():
            raise UserError(f"{data_dir}: no {file}; {hint}")
    manifest = _read_manifest(data_dir)
    if not manifest:
        raise UserError(f"{data_dir / MANIFEST_FILE}: not a valid manifest; {hint}")
    if tokenizer is not None and tokenizer.fingerprint != manifest.get("tokenizer_fingerprint"):
        raise UserError(f"{data_dir}: prepared with another tokenizer ({manifest.get('tokenizer_dir')}); prepare it "
                        f"again with --checkpoint_dir {tokenizer.checkpoint_dir}")
    splits = []
    for file in ("train.pt", "test.pt"):
        try:
            splits.append(torch.load(data_dir / file, weights_only=True))
        except Exception as e:  # truncated/corrupt pickles raise several exception types
            raise UserError(f"{data_dir / file}: cannot read ({type(e).__name__}); {hint}") from None
    return splits[0], splits[1], manifest


# ---- source files: local, Hub, URL -------------------------------------------------------------------------------
def fetch_source(data_path: Optional[Path], destination_path: Path, *, repo_id: Optional[str] = None,
                 filename: Optional[str] = None, url: Optional[str] = None,
                 access_token: Optional[str] = None) -> Path:
    """The source file: `data_path` when given, else downloaded once (from a Hub dataset repo or a URL) into
    destination_path/source and reused from there."""
    if data_path is not None:
        data_path = Path(data_path)
        if not data_path.exists():
            raise UserError(f"{data_path}: file not found (--data_path)")
        return data_path
    cache_dir = Path(destination_path) / "source"
    if repo_id is not None:
        from lit_gpt.hub import download_dataset_file

        return download_dataset_file(repo_id, filename, access_token, cache_dir=cache_dir)
    if url is None:
        raise UserError("no source given: pass --data_path")
    target = cache_dir / url.rstrip("/").rsplit("/", 1)[-1]
    if target.is_file():
        return target
    print(f"downloading {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                while block := response.read(1 << 20):
                    f.write(block)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"{url}: cannot download ({reason}); check the network, or download the file yourself and "
                        "pass --data_path") from None
    return target


# ---- checks of prepared data (scripts/inspect_data.py) ----------------------------------------------------------
DEFECTS = ("labels differ from input_ids", "trained span lacks EOS", "nothing trained", "empty response",
           "doubled BOS", "missing BOS", "longer than max_seq_length")


def example_defects(example: dict, bos_id: Optional[int], eos_id: Optional[int], use_bos: bool = False,
                    max_seq_length: Optional[int] = None) -> list[str]:
    """The problems of one prepared example that would silently hurt training (names from DEFECTS)."""
    ids, labels = example["input_ids"], example["labels"]
    if ids.shape != labels.shape:
        return ["labels differ from input_ids"]
    defects = []
    trained = labels != IGNORE_INDEX
    if bool((labels[trained] != ids[trained]).any()):
        defects.append("labels differ from input_ids")
    n_trained = int(trained.sum())
    if n_trained == 0:
        defects.append("nothing trained")
    else:
        if eos_id is not None and int(labels[trained][-1]) != eos_id:
            defects.append("trained span lacks EOS")
        if n_trained == 1 or not str(example.get("output", "x")).strip():
            defects.append("empty response")
    if bos_id is not None and len(ids) > 1 and int(ids[0]) == bos_id and int(ids[1]) == bos_id:
        defects.append("doubled BOS")
    if use_bos and bos_id is not None and (len(ids) == 0 or int(ids[0]) != bos_id):
        defects.append("missing BOS")
    if max_seq_length is not None and len(ids) > max_seq_length:
        defects.append("longer than max_seq_length")
    return defects
