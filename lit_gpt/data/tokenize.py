"""Normalized examples -> token ids and labels, and prompts -> ids for inference, with one tokenization per
conversation.

A prompt style (`lit_gpt.prompts.styles`) renders a conversation as (text, trained) segments; `encode_segments` tokenizes
the text between special tokens in one piece and marks a token trained when its character span overlaps a trained
segment (tokenize once, mask by offsets: BPE and SentencePiece merge across a prompt/answer boundary, so tokenizing
the parts separately would differ from what the model sees). Labels are the ids where trained, IGNORE_INDEX (-100)
elsewhere; every example ends with a trained EOS, and an example longer than max_seq_length is truncated (its answer
cut, the EOS kept) or dropped.
"""

import contextlib
import functools
import sys
from collections import Counter
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from lit_gpt.data.normalize import conversation
from lit_gpt.prompts.styles import PromptStyle, Special, get_prompt_style
from lit_gpt.utils import UserError

IGNORE_INDEX = -100


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
    legacy HF Llama tokenizer do; a piece that follows a special token and opens with a space (Mistral's template
    writes `<s> [INST]` and `</s> [INST]`) has that space encoded as its dummy prefix, not as a second one, which is
    how mistral_common encodes it and how transformers tokenizes the template's text."""
    cache: dict = {}
    runs: list[str] = []
    plans = []
    merge_space = _dummy_prefix(tokenizer)
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
            if merge_space and not buffer and plan and text.startswith(" ") and not isinstance(text, Special):
                text = text[1:]  # the space after a special token is the run's dummy prefix (`<s> [INST]` -> `▁[`)
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


@functools.lru_cache(maxsize=8)
def _dummy_prefix(tokenizer) -> bool:
    """Whether the tokenizer puts a word-boundary space before every text it encodes (Llama/Mistral SentencePiece;
    not Gemma's, not byte-level BPE)."""
    if tokenizer.backend != "sentencepiece":
        return False
    ids = tokenizer.encode_ids("a")
    return bool(ids) and tokenizer.id_to_token(ids[0]).startswith("\u2581")


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


def with_bos_and_eos(tokenizer, ids: list[int], flags: list[bool]) -> tuple[list[int], list[bool]]:
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
    kept, dropped = [], Counter()
    bar = tqdm(total=len(examples), desc=progress, unit="rows", disable=None if progress else True, file=sys.stderr)
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin: begin + batch_size]
        encoded = encode_segments(tokenizer, [training_segments(style, conversation(ex)) for ex in chunk])
        for example, (ids, flags) in zip(chunk, encoded):
            ids, flags = with_bos_and_eos(tokenizer, ids, flags)
            ids, flags, status = fit_to_length(ids, flags, max_seq_length, tokenizer.eos_id, truncation)
            if ids is None:
                dropped[status] += 1
                continue
            labels = [i if f else IGNORE_INDEX for i, f in zip(ids, flags)] if mask_inputs else ids
            kept.append({**example, "input_ids": long_tensor(ids), "labels": long_tensor(labels),
                         "truncated": status == "truncated"})
        bar.update(len(chunk))
    bar.close()
    return kept, dropped


def long_tensor(ids: list[int]) -> torch.Tensor:
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
