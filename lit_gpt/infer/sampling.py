"""Autoregressive sampling with the KV cache: prefill the prompt once, then feed one token per step.

`sample` turns one logits vector into a token (greedy, temperature, top-k, nucleus/top-p); `generate` loops it until
EOS or `max_new_tokens`; `TextStreamer` prints the tokens as text while they arrive, `StopStringStreamer` also ends
the answer at a stop string of the prompt style; `stream_answer` puts the three together.
"""

import sys
from typing import Callable, Iterable, Optional, Sequence, TextIO, Union


import torch

from lit_gpt.model import GPT
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError


def sampling_error(temperature: float, top_k: Optional[int], top_p: Optional[float]) -> Optional[str]:
    """What is wrong with these sampling settings, named as the scripts' flags; None when they are fine."""
    if temperature < 0:
        return f"--temperature {temperature}: must be >= 0 (0 = greedy)"
    if top_k is not None and top_k < 1:
        return f"--top_k {top_k}: must be at least 1"
    if top_p is not None and not 0.0 < top_p <= 1.0:
        return f"--top_p {top_p}: must be in (0, 1]"
    return None


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
           top_p: Optional[float] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token id per row of `logits` (..., vocab) -> (..., 1). temperature 0 (or top_k 1) is greedy argmax."""
    error = sampling_error(temperature, top_k, top_p)
    if error is not None:
        raise ValueError(error)
    logits = logits.float()  # softmax and cumulative sums of bf16/fp16 logits are too coarse
    if temperature == 0.0 or top_k == 1:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs.view(-1, probs.size(-1)), 1, generator=generator).view(*probs.shape[:-1], 1)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keeps the nucleus: the most likely tokens whose probabilities sum to at least top_p; the rest get -inf.
    A token stays iff the mass of the tokens more likely than it is still below top_p, so the top token always stays."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop_sorted = mass_before >= top_p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _last(batch: torch.Tensor) -> torch.Tensor:
    """output_mask of each row's last position: (B, T) -> logits (B, vocab)."""
    mask = torch.zeros_like(batch, dtype=torch.bool)
    mask[:, -1] = True
    return mask


def rope_refill_position(config) -> Optional[int]:
    """The position whose token makes longrope (Phi-3) switch from its short to its long frequency factors for the
    whole sequence; generation recomputes the KV cache there, as transformers' Phi-3 does. None for other models.
    In a batch, the factors follow the longest row (the positions' maximum), as in a transformers batch."""
    scaling = config.rope_scaling or {}
    return scaling["original_max_position_embeddings"] if scaling.get("rope_type") == "longrope" else None


@torch.inference_mode()
def generate(model: GPT, prompt_ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None,
             eos_id: Union[int, Iterable[int], None] = None, stream: Optional[Callable[[int], None]] = None,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Samples up to `max_new_tokens` tokens after `prompt_ids` (1D) and returns them (1D, without the prompt).

    Generation stops at the first token in `eos_id`; that token is neither returned nor streamed. `stream` is
    called with each new token id as soon as it is sampled. A batch of one of `generate_batch`."""
    if prompt_ids.ndim != 1 or prompt_ids.numel() == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1D tensor, got shape {tuple(prompt_ids.shape)}")
    new_ids = generate_batch(model, [prompt_ids], max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             eos_id=eos_id, generator=generator,
                             stream=None if stream is None else lambda row, token: stream(token))[0]
    return torch.tensor(new_ids, dtype=torch.long, device=prompt_ids.device)


@torch.inference_mode()
def generate_batch(model: GPT, prompts: Sequence[torch.Tensor], max_new_tokens: int, *, temperature: float = 1.0,
                   top_k: Optional[int] = None, top_p: Optional[float] = None,
                   eos_id: Union[int, Iterable[int], None] = None,
                   stop: Optional[Callable[[int, list], bool]] = None,
                   stream: Optional[Callable[[int, int], None]] = None,
                   generator: Optional[torch.Generator] = None) -> "list[list[int]]":
    """The new token ids of each prompt (1D tensors of any lengths), generated together with one KV cache.

    The prompts are left-padded to the longest: every row's last prompt token sits in the same slot, so one token
    per row is fed at each step. The model gives each row positions from 0 and masks its padding
    (`GPT.forward(left_pad=...)`), so a row's greedy tokens are those of the prompt alone. A row ends at a token in
    `eos_id` (not returned), when `stop(row, its ids so far)` says so (e.g. a stop string), or after
    max_new_tokens; finished rows leave the batch (and the KV cache), so the rest runs as a smaller batch. `stream`
    gets (row, token id) as each is sampled. Sampling with a seeded `generator` is reproducible for the same batch;
    greedy (temperature 0) does not depend on the batch at all (up to float rounding of the batched matmuls)."""
    if not prompts or any(p.ndim != 1 or p.numel() == 0 for p in prompts):
        raise ValueError("prompts must be non-empty 1D tensors")
    config, device = model.config, prompts[0].device
    lengths = [p.numel() for p in prompts]
    longest = max(lengths)
    if longest + max_new_tokens > config.block_size:
        raise UserError(f"the prompt has {longest} tokens; with --max_new_tokens {max_new_tokens} that exceeds "
                        f"the model's context of {config.block_size} tokens; shorten the prompt or lower "
                        "--max_new_tokens")
    top_id = max(int(p.max()) for p in prompts)
    if top_id >= config.vocab_size:
        raise UserError(f"the prompt has token id {top_id} but the model's vocabulary has "
                        f"{config.vocab_size} entries; the tokenizer files do not belong to this checkpoint")
    stop_ids = set([eos_id] if isinstance(eos_id, int) else eos_id or [])
    new_ids: list[list[int]] = [[] for _ in prompts]
    if max_new_tokens <= 0:
        return new_ids

    batch = torch.zeros(len(prompts), longest, dtype=torch.long, device=device)  # the padding id never matters
    for row, p in enumerate(prompts):
        batch[row, longest - p.numel():] = p
    left_pad = torch.tensor([longest - n for n in lengths], device=device)
    refill_at = rope_refill_position(config)
    rows = list(range(len(prompts)))  # which prompt each batch row is
    model.set_kv_cache(batch_size=len(prompts), max_seq_length=longest + max_new_tokens, device=device)
    try:
        logits = model(batch, input_pos=torch.arange(longest, device=device), output_mask=_last(batch),
                       left_pad=left_pad if left_pad.any() else None)  # the LM head on the last position only
        for step in range(max_new_tokens):
            tokens = sample(logits, temperature, top_k, top_p, generator)  # (rows, 1)
            keep = []
            for i, row in enumerate(rows):
                token_id = int(tokens[i])
                if token_id in stop_ids:
                    continue
                new_ids[row].append(token_id)
                if stream is not None:
                    stream(row, token_id)
                if stop is None or not stop(row, new_ids[row]):
                    keep.append(i)
            if not keep or step + 1 == max_new_tokens:  # the last token's logits would be thrown away
                break
            if refill_at is not None:  # the ids so far, for the one forward that recomputes the cache
                batch = torch.cat((batch, tokens), dim=1)
            if len(keep) < len(rows):
                kept = torch.tensor(keep, device=device)
                model.keep_kv_cache_rows(kept)
                batch, tokens, left_pad = batch[kept], tokens[kept], left_pad[kept]
                rows = [rows[i] for i in keep]
            slot = longest + step
            pad = left_pad if left_pad.any() else None
            if slot == refill_at:  # longrope switched its factors: every cached key was rotated with the old ones
                logits = model(batch, input_pos=torch.arange(slot + 1, device=device), output_mask=_last(batch),
                               left_pad=pad)
            else:
                logits = model(tokens, input_pos=torch.tensor([slot], device=device), left_pad=pad)[:, -1]
    finally:
        model.clear_kv_cache()
    return new_ids


class TextStreamer:
    """Prints generated tokens as text as they arrive (pass the instance as `generate(..., stream=streamer)`).

    It decodes all tokens so far and prints what is new: decoding token by token would lose SentencePiece's word
    spaces, and a character split over several byte tokens decodes to U+FFFD until its last byte arrives, so text
    ending in U+FFFD is held back and only complete UTF-8 text is printed."""

    def __init__(self, tokenizer, file: Optional[TextIO] = None) -> None:
        self.tokenizer = tokenizer
        self.file = file
        self.token_ids: list[int] = []
        self.printed = 0  # characters of the decoded text already printed

    def __call__(self, token_id: int) -> None:
        self.put(token_id)

    def put(self, token_id: int) -> None:
        self.token_ids.append(int(token_id))
        text = self.tokenizer.decode(self.token_ids)
        if not text.endswith("\ufffd"):
            self._emit(text)

    def end(self) -> str:
        """Prints whatever is held back (even an incomplete character) and returns the whole text."""
        text = self.tokenizer.decode(self.token_ids) if self.token_ids else ""
        self._emit(text)
        return text

    def _emit(self, text: str) -> None:
        new = text[self.printed:]
        if new:
            file = self.file or sys.stdout
            file.write(new)
            file.flush()
            self.printed = len(text)



class _StopStringReached(Exception):
    pass


class StopStringStreamer(TextStreamer):
    """TextStreamer that also ends the answer at the first of `stop_strings` (e.g. Alpaca's "### Instruction:", where
    a model goes on to invent the next turn). Text that could be the start of a stop string is held back until it is
    clear; the stop string itself is never printed."""

    def __init__(self, tokenizer: Tokenizer, stop_strings: Iterable[str] = (), file: Optional[TextIO] = None) -> None:
        super().__init__(tokenizer, file)
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.text = ""

    def put(self, token_id: int) -> None:
        self.token_ids.append(int(token_id))
        text = self.tokenizer.decode(self.token_ids)
        cut = min((i for i in (text.find(s) for s in self.stop_strings) if i >= 0), default=-1)
        if cut >= 0:
            self.text = text[:cut]
            self._emit(self.text)
            raise _StopStringReached
        self.text = text
        held = max((k for s in self.stop_strings for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        if not text.endswith("\ufffd"):
            self._emit(text[:len(text) - held])

    def end(self) -> str:
        self._emit(self.text)
        return self.text


def stream_answer(model: GPT, tokenizer: Tokenizer, prompt_ids: torch.Tensor, max_new_tokens: int, *,
                  temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
                  stop_strings: Iterable[str] = (), file: Optional[TextIO] = None) -> tuple[int, str]:
    """Generates and prints the answer as it arrives, until a stop id of the tokenizer, a stop string or
    max_new_tokens; returns (tokens generated, answer text)."""
    streamer = StopStringStreamer(tokenizer, stop_strings, file)
    try:
        generate(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                 eos_id=tokenizer.stop_ids, stream=streamer)
    except _StopStringReached:
        pass
    return len(streamer.token_ids), streamer.end()
