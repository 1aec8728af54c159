"""Preference pairs (a prompt, a chosen and a rejected answer) for DPO-style training: rows in the common layouts ->
normalized pairs -> token ids with the prompt stored once. `PREFERENCES` is their `ExampleFormat`: the pipeline of
lit_gpt/data/prepare.py (bad rows counted or one-line errors, the seeded split, the manifest and its fingerprint)
prepares them as it prepares instruction examples.

Layouts that `normalize_pair` reads:
- chosen / rejected conversations (UltraFeedback binarized): lists of {"role", "content"} that end with the two
  answers; the messages before them, the prompt, must be the same in both;
- a prompt (text or messages; or instruction + input) and chosen / rejected answer texts;
- chosen / rejected whole transcripts without a prompt (Anthropic HH-RLHF: "\\n\\nHuman: ...\\n\\nAssistant: ..."): the
  shared prefix up to its last "\\n\\nAssistant:" is the prompt, split into its turns;
- Alpaca-style rows with two answers (AlpacaFarm): instruction, input, output_1, output_2 and preference (1 or 2);
- two Alpaca-layout files of answers to the same instructions (`answer_pairs`), one preferred (e.g. GPT-4's and
  text-davinci-003's answers to Alpaca instructions) or each answer scored (a judge's rating, `rank_by`).

A normalized pair is {"prompt": [messages ending with a user message], "chosen": str, "rejected": str, "source",
"id", "metadata"}. Tokenized, it gains "prompt_ids" (once), "chosen_ids" / "rejected_ids" (what follows the prompt)
with "chosen_mask" / "rejected_mask" (True where trained: the answer and its end of turn), and "truncated". The
prompt is the longest shared start of the two tokenized conversations, each tokenized in one piece (a BPE merge
across the prompt/answer boundary stays as the model sees it); an untrained token after it stays in the answer's
ids, masked.
"""

import re
from collections import Counter
from typing import Any, Iterable, Iterator, Optional

import torch

from lit_gpt.data.normalize import ROLES, BadRecord, is_multi_turn, normalize_messages, plain_value
from lit_gpt.data.prepare import ExampleFormat
from lit_gpt.data.prepared import length_stats
from lit_gpt.data.tokenize import (IGNORE_INDEX, encode_segments, fit_to_length, long_tensor, training_segments,
                                   with_bos_and_eos)
from lit_gpt.utils import UserError

PREFERENCE_FORMAT = "preference"
PAIR_FIELDS = ("prompt", "chosen", "rejected", "messages", "instruction", "input", "output_1", "output_2",
               "preference", "source", "id")
HH_TURN = re.compile(r"\n\nHuman:|\n\nAssistant:")
UNRANKED = "_unranked"  # set by answer_pairs(rank_by=...) on a pair whose answers it could not order: dropped


def normalize_pair(record: dict, source: Optional[str] = None) -> dict:
    """One row in any of the layouts above -> a normalized pair; BadRecord (a short reason) for a row that is not
    one."""
    if not isinstance(record, dict):
        raise BadRecord("not a JSON object")
    if UNRANKED in record:
        raise BadRecord(record[UNRANKED])
    if "output_1" in record or "output_2" in record:
        prompt, chosen, rejected = _two_answers(record)
    elif isinstance(record.get("chosen"), list) or isinstance(record.get("rejected"), list):
        prompt, chosen, rejected = _conversations(record.get("chosen"), record.get("rejected"))
    elif record.get("prompt") is not None or record.get("instruction") is not None:
        prompt = _prompt(record)
        chosen, rejected = _answer(record, "chosen"), _answer(record, "rejected")
    else:
        prompt, chosen, rejected = _transcripts(_answer(record, "chosen"), _answer(record, "rejected"))
    if chosen.strip() == rejected.strip():
        raise BadRecord("chosen and rejected are the same answer")
    row_source = record.get("source")
    pair = {"prompt": prompt, "chosen": chosen, "rejected": rejected,
            "source": str(row_source) if row_source not in (None, "") else (source or "unknown")}
    if record.get("id") not in (None, ""):
        pair["id"] = str(record["id"])
    metadata = {str(k): plain_value(v) for k, v in record.items() if k not in PAIR_FIELDS and v is not None}
    if metadata:
        pair["metadata"] = metadata
    return pair


def answer_pairs(chosen: Iterable[tuple[str, dict]], rejected: Iterable[tuple[str, dict]],
                 rank_by: Optional[str] = None, reverse: bool = False) -> Iterator[tuple[str, dict]]:
    """Rows of two files of answers to instructions (Alpaca layout: instruction, input, output) -> (where, pair
    row) for each instruction + input found in both: the first file's output chosen, the second's rejected (its
    first answer to that instruction). Rows of the first file without a match in the second are left out.
    rank_by: a numeric column both files have (a judge's score, e.g. score_dataset.py's score_alpagasus): the
    answer with the higher value is the chosen one, whichever file it is in; a tie or a missing score drops the
    pair (counted in the manifest). reverse: the second file's answers are the chosen ones, the pairs still in the
    first file's order (the same pairs and train/test split as without it: a reversed-preference control)."""
    others = {}
    for _, row in rejected:
        if isinstance(row, dict):
            others.setdefault((row.get("instruction"), row.get("input") or ""), row)
    for where, row in chosen:
        key = (row.get("instruction"), row.get("input") or "") if isinstance(row, dict) else None
        if key in others:
            first, second = (others[key], row) if reverse else (row, others[key])
            pair = {"instruction": key[0], "input": key[1], "chosen": first.get("output"),
                    "rejected": second.get("output")}
            if rank_by is not None:
                pair = _ranked(pair, first.get(rank_by), second.get(rank_by), rank_by)
            yield where, pair


def _ranked(pair: dict, first: Any, second: Any, rank_by: str) -> dict:
    """The pair with its answers ordered by their scores; a row that normalize_pair drops where they cannot be."""
    scores = [plain_value(v) for v in (first, second)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v for v in scores):
        return {**pair, UNRANKED: f"no numeric {rank_by} in both answers"}
    if scores[0] == scores[1]:
        return {**pair, UNRANKED: f"tied {rank_by}"}
    if scores[1] > scores[0]:
        pair = {**pair, "chosen": pair["rejected"], "rejected": pair["chosen"]}
        scores.reverse()
    return {**pair, f"chosen_{rank_by}": scores[0], f"rejected_{rank_by}": scores[1]}


def _answer(record: dict, field: str) -> str:
    value = record.get(field)
    if value is None:
        raise BadRecord(f"missing {field}")
    if not isinstance(value, str):
        raise BadRecord(f"{field} is not text")
    if not value.strip():
        raise BadRecord(f"empty {field}")
    return value


def _prompt(record: dict) -> list[dict]:
    """A prompt column (text or messages), else Alpaca's instruction + input as one user message."""
    prompt = record.get("prompt")
    if isinstance(prompt, list):
        return prompt_messages(prompt)
    text = prompt if prompt is not None else record.get("instruction")
    if not isinstance(text, str) or not text.strip():
        raise BadRecord("empty prompt" if isinstance(text, str) else "prompt is not text")
    extra = record.get("input") if prompt is None else None
    return [{"role": "user", "content": text, "input": extra if isinstance(extra, str) else ""}]


def prompt_messages(messages: list) -> list[dict]:
    """A prompt conversation, checked as a conversation is (roles alternate from the user's, no empty message) and
    ending with the user's message that the answers reply to."""
    if not messages or not isinstance(messages[-1], dict) or \
            ROLES.get(str(messages[-1].get("role", messages[-1].get("from", ""))).lower()) != "user":
        raise BadRecord("prompt does not end with a user message")
    # normalize_messages checks a conversation that ends with an answer: a stand-in answer, dropped again
    return normalize_messages([*messages, {"role": "assistant", "content": "(answer)"}])[:-1]


def _two_answers(record: dict) -> tuple[list[dict], str, str]:
    """AlpacaFarm: instruction (+ input), output_1, output_2 and which one people preferred (1 or 2)."""
    preference = record.get("preference")
    if preference not in (1, 2, "1", "2"):
        raise BadRecord("preference is not 1 or 2")
    first, second = _answer(record, "output_1"), _answer(record, "output_2")
    chosen, rejected = (first, second) if int(preference) == 1 else (second, first)
    return _prompt(record), chosen, rejected


def _conversations(chosen: Any, rejected: Any) -> tuple[list[dict], str, str]:
    messages = []
    for name, conversation in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(conversation, list) or not conversation:
            raise BadRecord(f"{name} is not a conversation")
        last = conversation[-1]
        if not isinstance(last, dict) or ROLES.get(str(last.get("role", last.get("from", ""))).lower()) != "assistant":
            raise BadRecord(f"{name} does not end with an assistant answer")
        messages.append(normalize_messages(conversation))
    chosen_messages, rejected_messages = messages
    if [(m["role"], m["content"]) for m in chosen_messages[:-1]] != \
            [(m["role"], m["content"]) for m in rejected_messages[:-1]]:
        raise BadRecord("chosen and rejected conversations differ before their answers")
    return chosen_messages[:-1], chosen_messages[-1]["content"], rejected_messages[-1]["content"]


def _transcripts(chosen: str, rejected: str) -> tuple[list[dict], str, str]:
    """HH-RLHF: the shared start of the two transcripts up to its last "\\n\\nAssistant:" is the prompt."""
    shared = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        shared += 1
    cut = chosen.rfind("\n\nAssistant:", 0, shared)
    if cut < 0:
        raise BadRecord("no prompt: no prompt column, and chosen and rejected share no '\\n\\nAssistant:' turn")
    cut += len("\n\nAssistant:")
    messages = []
    turns = HH_TURN.split(chosen[:cut])
    for marker, text in zip(HH_TURN.findall(chosen[:cut]), turns[1:]):
        role = "user" if marker.endswith("Human:") else "assistant"
        if messages and messages[-1]["role"] == role:  # two turns of one speaker in a row: one message
            messages[-1]["content"] += "\n\n" + text.strip()
        elif text.strip() or role == "user":
            messages.append({"role": role, "content": text.strip()})
    if not messages or messages[0]["role"] != "user" or turns[0].strip():
        raise BadRecord("transcript does not start with '\\n\\nHuman:'")
    return prompt_messages(messages), chosen[cut:].strip(), rejected[cut:].strip()


# ---- tokenization ----------------------------------------------------------------------------------------------------
def tokenize_pairs(pairs: list[dict], tokenizer, style, max_seq_length: int, mask_inputs: bool = True,
                   truncation: str = "truncate", progress: Optional[str] = None) -> tuple[list[dict], Counter]:
    """Adds prompt_ids, chosen_ids/mask, rejected_ids/mask and truncated to each pair (see the module docstring);
    prompt + answer longer than max_seq_length is truncated (the answer cut, its EOS kept) or dropped. mask_inputs
    must stay true: a preference loss compares the answers only."""
    if not mask_inputs:
        raise UserError("--mask_inputs false does not apply to preference pairs: their losses compare the answers")
    conversations = [[*p["prompt"], {"role": "assistant", "content": p[answer]}] for p in pairs
                     for answer in ("chosen", "rejected")]
    encoded = encode_segments(tokenizer, [training_segments(style, c) for c in conversations])
    kept, dropped = [], Counter()
    for i, pair in enumerate(pairs):
        sides = [_last_answer_only(tokenizer, *encoded[2 * i + k], max_seq_length, truncation) for k in (0, 1)]
        reason = next((status for ids, _, status in sides if ids is None), None)
        if reason is not None:
            dropped[reason] += 1
            continue
        (chosen, chosen_flags, chosen_status), (rejected, rejected_flags, rejected_status) = sides
        start = _shared_prompt_length(chosen, chosen_flags, rejected, rejected_flags)
        kept.append({**pair, "prompt_ids": long_tensor(chosen[:start]),
                     "chosen_ids": long_tensor(chosen[start:]), "chosen_mask": _bool_tensor(chosen_flags[start:]),
                     "rejected_ids": long_tensor(rejected[start:]),
                     "rejected_mask": _bool_tensor(rejected_flags[start:]),
                     "truncated": "truncated" in (chosen_status, rejected_status)})
    return kept, dropped


def _last_answer_only(tokenizer, ids: list[int], flags: list[bool], max_seq_length: int, truncation: str):
    """BOS/EOS as for instruction data, and only the final answer trained (earlier answers are part of the prompt)."""
    ids, flags = with_bos_and_eos(tokenizer, ids, flags)
    last = len(flags)
    while last > 0 and flags[last - 1]:
        last -= 1
    flags = [False] * last + flags[last:]
    return fit_to_length(ids, flags, max_seq_length, tokenizer.eos_id, truncation)


def _shared_prompt_length(a: list[int], a_flags: list[bool], b: list[int], b_flags: list[bool]) -> int:
    limit = min(a_flags.index(True), b_flags.index(True))
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _bool_tensor(flags: list[bool]) -> torch.Tensor:
    return torch.tensor(flags, dtype=torch.bool)


def pair_summary(pairs: list[dict]) -> dict:
    """The manifest's multi_turn (prompts of several user turns), token_lengths (prompt + the longer answer) and
    trained_token_share (over both sequences)."""
    lengths = [{"input_ids": range(len(p["prompt_ids"]) + max(len(p["chosen_ids"]), len(p["rejected_ids"])))}
               for p in pairs]
    total = sum(2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in pairs)
    trained = sum(int(p["chosen_mask"].sum()) + int(p["rejected_mask"].sum()) for p in pairs)
    return {"multi_turn": sum(is_multi_turn(p["prompt"]) for p in pairs), "token_lengths": length_stats(lengths),
            "trained_token_share": round(trained / total, 4) if total else 0.0}


PREFERENCES = ExampleFormat(PREFERENCE_FORMAT, normalize_pair, tokenize_pairs, pair_summary)


def pair_as_instruction(pair: dict, answer: str = "chosen") -> dict:
    """A tokenized pair seen as the instruction example of one of its answers (what a study scores and checks for
    contamination): instruction and input of its last user turn (the whole conversation under messages when the
    prompt has several turns), the answer as output, input_ids = the prompt's ids + the answer's, labels where the
    answer is trained, and pair_tokens: both rows' tokens, what training the pair reads."""
    user = next(m for m in reversed(pair["prompt"]) if m["role"] == "user")
    ids = torch.cat([pair["prompt_ids"], pair[f"{answer}_ids"]])
    labels = torch.full_like(ids, IGNORE_INDEX)
    start = len(pair["prompt_ids"])
    labels[start:] = torch.where(pair[f"{answer}_mask"], pair[f"{answer}_ids"], IGNORE_INDEX)
    example = {"instruction": user["content"], "input": user.get("input", ""), "output": pair[answer],
               "source": pair.get("source"), "id": pair.get("id"), "input_ids": ids, "labels": labels,
               "truncated": pair["truncated"],
               "pair_tokens": 2 * start + len(pair["chosen_ids"]) + len(pair["rejected_ids"])}
    if is_multi_turn(pair["prompt"]):
        example["messages"] = [*pair["prompt"], {"role": "assistant", "content": pair[answer]}]
    return example
