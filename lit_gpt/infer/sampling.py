"""Autoregressive sampling with the KV cache: prefill the prompt once, then feed one token per step.

`sample` turns one logits vector into a token (greedy, temperature, top-k, nucleus/top-p); `generate_batch` is the
one generation loop, continuous batching over a pool of prompts (a row that ends is given to the next prompt at
once); `generate` is its batch of one, until EOS or `max_new_tokens`; `TextStreamer` prints the tokens as text
while they arrive, `StopStringStreamer` also ends the answer at a stop string of the prompt style; `stream_answer`
puts the three together.
"""

import sys
from collections import deque
from typing import Callable, Iterable, Optional, Sequence, TextIO, Union

import torch

from lit_gpt.infer.cache import RowCache, rope_refill_position
from lit_gpt.infer.lookup import PromptLookup
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
    if temperature == 0.0 or top_k == 1:  # the same argmax in any dtype: no float32 copy of the logits
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float()  # softmax and cumulative sums of bf16/fp16 logits are too coarse
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


@torch.inference_mode()
def generate(model: GPT, prompt_ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None,
             eos_id: Union[int, Iterable[int], None] = None, stream: Optional[Callable[[int], None]] = None,
             generator: Optional[torch.Generator] = None, compile: bool = False,
             prompt_lookup: int = 0) -> torch.Tensor:
    """Samples up to `max_new_tokens` tokens after `prompt_ids` (1D) and returns them (1D, without the prompt).

    Generation stops at the first token in `eos_id`; that token is neither returned nor streamed. `stream` is
    called with each new token id as soon as it is sampled. A batch of one of `generate_batch` (compile: its decode
    step through torch.compile; prompt_lookup: its draft tokens, greedy only)."""
    if prompt_ids.ndim != 1 or prompt_ids.numel() == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1D tensor, got shape {tuple(prompt_ids.shape)}")
    new_ids = generate_batch(model, [prompt_ids], max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             eos_id=eos_id, generator=generator, compile=compile, prompt_lookup=prompt_lookup,
                             stream=None if stream is None else lambda row, token: stream(token))[0]
    return torch.tensor(new_ids, dtype=torch.long, device=prompt_ids.device)


def token_budgets(model: GPT, prompts: Sequence[torch.Tensor], max_new_tokens: "int | Sequence[int]") -> list[int]:
    """Each prompt's most new tokens, checked: the prompts must be non-empty 1D token ids of the model's vocabulary,
    and each with its budget (when it has one: a prompt with none is not run) must fit the model's context."""
    if not prompts or any(p.ndim != 1 or p.numel() == 0 for p in prompts):
        raise ValueError("prompts must be non-empty 1D tensors")
    config = model.config
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    for p, budget in zip(prompts, budgets):
        if budget > 0 and p.numel() + budget > config.block_size:
            raise UserError(f"the prompt has {p.numel()} tokens; with --max_new_tokens {budget} that exceeds "
                            f"the model's context of {config.block_size} tokens; shorten the prompt or lower "
                            "--max_new_tokens")
    top_id = max(int(p.max()) for p in prompts)
    if top_id >= config.vocab_size:
        raise UserError(f"the prompt has token id {top_id} but the model's vocabulary has "
                        f"{config.vocab_size} entries; the tokenizer files do not belong to this checkpoint")
    return budgets


class _Answers:
    """The answers being generated: each prompt's new ids so far, and what ends them (see `generate_batch`)."""

    def __init__(self, budgets: list, eos_id, stop, stream, done) -> None:
        self.budgets, self.stop, self.stream, self.done = budgets, stop, stream, done or (lambda i: None)
        self.stop_ids = set([eos_id] if isinstance(eos_id, int) else eos_id or [])
        self.ids: list[list[int]] = [[] for _ in budgets]

    def goes_on(self, i: int, token_id: int) -> bool:
        """Records prompt i's new token; False when its answer has ended (then `done` hears of it)."""
        if token_id not in self.stop_ids:
            self.ids[i].append(token_id)
            if self.stream is not None:
                self.stream(i, token_id)
            if not (self.stop is not None and self.stop(i, self.ids[i])) and len(self.ids[i]) < self.budgets[i]:
                return True
        self.done(i)
        return False


@torch.inference_mode()
def generate_batch(model: GPT, prompts: Sequence[torch.Tensor], max_new_tokens: "int | Sequence[int]", *,
                   batch_size: Optional[int] = None, temperature: float = 1.0, top_k: Optional[int] = None,
                   top_p: Optional[float] = None, eos_id: Union[int, Iterable[int], None] = None,
                   stop: Optional[Callable[[int, list], bool]] = None,
                   stream: Optional[Callable[[int, int], None]] = None, done: Optional[Callable[[int], None]] = None,
                   generator: Optional[torch.Generator] = None, compile: bool = False,
                   prompt_lookup: int = 0) -> "list[list[int]]":
    """The new token ids of each prompt (1D tensors of any lengths), by continuous batching: `batch_size` rows
    (default: all prompts) are in flight, each prompt in its own KV-cache row at its own positions
    (`lit_gpt.infer.cache.RowCache`), one token per row per step (or more: prompt_lookup). A row ends at a token in
    `eos_id` (not returned), when `stop(prompt index, its ids so far)` says so (e.g. a stop string), or after its
    budget (`max_new_tokens`: one for all, or one per prompt); its row goes at once to the next prompt, whose prefill
    runs alone and joins the batch, so one long answer never holds up the others. Prompts start longest first (rows
    of similar lengths run together); results come in the prompts' order. `stream` gets (prompt index, token id) as
    each is sampled, `done` a prompt's index when its answer is complete. compile: `RowCache`'s.

    prompt_lookup: greedy decoding only (temperature 0 or top_k 1; ignored otherwise, with compile and for longrope
    models): each step also feeds up to that many draft tokens per row, copied from earlier in its sequence
    (`lit_gpt.infer.lookup`), and keeps those that greedy decoding confirms, so a step can emit several tokens.

    Each row attends to its own keys only, so greedy (temperature 0) answers equal those of each prompt alone (up
    to float rounding of the batched matmuls); sampling with a seeded `generator` is reproducible for the same
    prompts and batch_size."""
    budgets = token_budgets(model, prompts, max_new_tokens)
    answers = _Answers(budgets, eos_id, stop, stream, done)
    for i in (i for i, budget in enumerate(budgets) if budget <= 0):
        answers.done(i)
    waiting = deque(sorted((i for i in range(len(prompts)) if budgets[i] > 0), key=lambda i: -prompts[i].numel()))
    if not waiting:
        return answers.ids
    # drafts need greedy decoding; a compiled step would be recompiled for the step shapes they bring (a 64-prompt
    # IFEval run took 4.3x as long), and longrope rows recompute their cache one token at a time
    drafting = prompt_lookup > 0 and (temperature == 0.0 or top_k == 1) and not compile
    lookup = PromptLookup(prompt_lookup) if drafting and rope_refill_position(model.config) is None else None
    rows = RowCache(model, min(batch_size or len(waiting), len(waiting)),
                    max(prompts[i].numel() + budgets[i] for i in waiting), prompts[0].device, compile,
                    lookahead=lookup.tokens if lookup else 0)

    def fill_free_rows() -> None:
        """Prefills waiting prompts into the free rows (after the active ones); a prompt whose answer ends at its
        first token takes no row."""
        while waiting and rows.active < rows.capacity:
            i = waiting.popleft()
            token = sample(rows.prefill(prompts[i], rows.active), temperature, top_k, top_p, generator)
            if answers.goes_on(i, int(token)):
                rows.put(rows.active, i, token, prompts[i].numel())
                if lookup:
                    lookup.start(i, [*prompts[i].tolist(), int(token)])

    try:
        fill_free_rows()
        while rows.active:
            drafts = {} if lookup is None else {
                i: lookup.draft(i, budgets[i] - len(answers.ids[i]) - 1) for i in rows.owner}
            logits = rows.step(drafts)  # (active, 1 + longest draft, vocab)
            _refill_longrope(rows, logits, rows.length, prompts, answers.ids)
            tokens = sample(logits, temperature, top_k, top_p, generator)[..., 0]  # (active, T)
            kept, ended = _keep_confirmed(rows.owner, tokens.tolist(), drafts, answers, lookup)
            rows.advance(kept, tokens.gather(1, torch.tensor(kept, device=tokens.device)[:, None] - 1))
            for row in reversed(ended):  # from the last, so that leave() moves only rows that go on
                if lookup:
                    lookup.drop(rows.owner[row])
                rows.leave(row)
            fill_free_rows()
    finally:
        rows.close()
    return answers.ids


def _keep_confirmed(owners: list, tokens: list, drafts: dict, answers: _Answers,
                    lookup: Optional[PromptLookup]) -> "tuple[list[int], list[int]]":
    """Each row's new tokens of a step, in order: the token after its fed token, then after each draft token as
    long as the draft token was the one sampled (so the logits that follow it are the ones a step without drafts
    would have given). Returns how many fed tokens each row keeps, and the rows whose answer ended."""
    kept, ended = [], []
    for row, (i, row_tokens) in enumerate(zip(owners, tokens)):
        draft = drafts.get(i, ())
        for t, token in enumerate(row_tokens):
            if not answers.goes_on(i, token):
                ended.append(row)
                break
            if lookup:
                lookup.extend(i, [token])
            if t >= len(draft) or draft[t] != token:
                break
        kept.append(t + 1)
    return kept, ended


def _refill_longrope(rows: RowCache, logits: torch.Tensor, fed_at: list, prompts: Sequence[torch.Tensor],
                     new_ids: list) -> None:
    """Longrope (Phi-3) switches a row's factors when the row's token at `rope_refill_position` is fed: that row's
    whole cache is recomputed (its prompt and answer so far, alone) and its logits of the step replaced."""
    refill_at = rope_refill_position(rows.model.config)
    for row in (r for r, position in enumerate(fed_at) if position == refill_at):
        i = rows.owner[row]
        ids = torch.cat((prompts[i], logits.new_tensor(new_ids[i], dtype=torch.long)))
        logits[row, 0] = rows.prefill(ids, row)[0]


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
                  stop_strings: Iterable[str] = (), file: Optional[TextIO] = None,
                  compile: bool = False, prompt_lookup: int = 0) -> tuple[int, str]:
    """Generates and prints the answer as it arrives, until a stop id of the tokenizer, a stop string or
    max_new_tokens; returns (tokens generated, answer text). compile: the decode step through torch.compile;
    prompt_lookup: `generate_batch`'s draft tokens (greedy only)."""
    streamer = StopStringStreamer(tokenizer, stop_strings, file)
    try:
        generate(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                 eos_id=tokenizer.stop_ids, stream=streamer, compile=compile, prompt_lookup=prompt_lookup)
    except _StopStringReached:
        pass
    return len(streamer.token_ids), streamer.end()
