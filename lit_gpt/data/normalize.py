"""Records -> normalized examples, the one shape every dataset tool works on.

A normalized example is a dict with `instruction`, `input`, `output`, `source` (str), `id` (str) and, when present,
`messages` (a multi-turn conversation, [{"role", "content"}], the first exchange mirrored in instruction/output),
`score` (float) and `metadata` (the source row's other fields). A row that cannot become one raises `BadRecord`
with the short reason that the manifest counts.
"""

import json
from pathlib import Path
from typing import Any, Optional, Sequence

from lit_gpt.data.records import CONVERSATION_KEYS, iter_records
from lit_gpt.utils import UserError

FIELDS = ("instruction", "input", "output", "source", "messages", "id", "score")
ROLES = {"user": "user", "human": "user", "prompter": "user", "assistant": "assistant", "gpt": "assistant",
         "bot": "assistant", "model": "assistant", "system": "system"}


class BadRecord(ValueError):
    """A row that cannot become an example. The message is the short reason counted in the manifest."""


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
        messages = normalize_messages(conversation)
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
        example["metadata"] = {str(k): plain_value(v) for k, v in metadata.items()}
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


def normalize_messages(conversation: Any) -> list[dict]:
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


def plain_value(value: Any) -> Any:
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


def is_multi_turn(messages: list[dict]) -> bool:
    """More than one user message: what the manifests' multi_turn counts (a system message makes no second turn,
    though it keeps a single exchange under `messages`)."""
    return sum(m.get("role") == "user" for m in messages) > 1


def read_instructions(data_path: Path, limit: Optional[int] = None, keep: Sequence[str] = ()) -> list[dict]:
    """{"instruction", "input"} of each row of a file in any layout `normalize` reads (the first user turn of a
    conversation), and the row's fields named in `keep` where it has them; in order, the first `limit` rows. Only
    the prompt matters: a row needs no answer. A row that is no instruction stops with one line naming it."""
    rows = []
    for label, record in iter_records(data_path):
        if limit is not None and len(rows) >= limit:
            break
        try:
            example = normalize(dict(record, output=record.get("output") or "-"))
        except BadRecord as e:
            raise UserError(f"{label}: {e}; each row needs an instruction (or a conversation)") from None
        kept = {k: record[k] for k in keep if k in record}
        rows.append({"instruction": example["instruction"], "input": example["input"], **kept})
    if not rows:
        raise UserError(f"{data_path}: no rows")
    return rows
