"""Draft tokens for greedy decoding, copied from earlier in the same sequence (prompt lookup decoding, Saxena 2023;
transformers' `prompt_lookup_num_tokens`).

A greedy answer often repeats what came before: names and phrases of its prompt, its own list markup, and, in small
models, whole sentences over and over until the token budget. So where the sequence's last n tokens (n = 3, else
2, else 1) occurred before, the tokens that followed them then are a good guess of what follows now. The generation
loop (`lit_gpt.infer.sampling.generate_batch`) feeds a row's next token together with such a draft in one forward
step, keeps the draft up to its first token that greedy decoding would not have picked, and so emits several tokens
for one pass over the weights and the KV cache. The answer stays the greedy answer: every kept token is the
argmax of the logits that follow exactly the tokens before it (equal to one token per step up to the float rounding
of matmuls of another shape).

Each sequence keeps an index from each n-gram to where its continuation last started, updated as tokens arrive
(a dict lookup per draft, no search). A draft that runs into the present copies on from what it has copied so far,
so a loop with a period shorter than the draft still gives a draft of full length.
"""

from typing import Iterable

from lit_gpt.utils import UserError

DRAFT_TOKENS = 4  # draft tokens per step where greedy answers are generated (evaluation, answers, --temperature 0)


def check_draft_tokens(value: int, flag: str = "--prompt_lookup") -> None:
    """The one-line error of a negative number of draft tokens, named as the flag that gave it."""
    if value < 0:
        raise UserError(f"{flag} {value}: must be 0 (one token per step) or more")


class PromptLookup:
    def __init__(self, tokens: int, max_ngram: int = 3) -> None:
        """tokens: the most draft tokens per step; max_ngram: the longest suffix matched (then shorter ones)."""
        if tokens < 1 or max_ngram < 1:
            raise ValueError(f"tokens ({tokens}) and max_ngram ({max_ngram}) must be at least 1")
        self.tokens, self.max_ngram = tokens, max_ngram
        self.sequences: dict[int, list[int]] = {}
        self.continuations: dict[int, dict[tuple, int]] = {}  # per sequence: n-gram -> where what followed it starts

    def start(self, key: int, ids: Iterable[int]) -> None:
        """A new sequence (a prompt and its first token), indexed from the beginning."""
        self.sequences[key], self.continuations[key] = [], {}
        self.extend(key, ids)

    def extend(self, key: int, ids: Iterable[int]) -> None:
        """Appends tokens; each n-gram that ended just before a new token now has a continuation, starting there."""
        sequence, index = self.sequences[key], self.continuations[key]
        for token in ids:
            end = len(sequence)
            for n in range(1, min(self.max_ngram, end) + 1):
                index[tuple(sequence[end - n:end])] = end
            sequence.append(int(token))

    def draft(self, key: int, limit: int) -> list[int]:
        """Up to min(tokens, limit) tokens that followed the latest earlier occurrence of the sequence's last n
        tokens (the longest n that occurred); [] when none did."""
        sequence, index = self.sequences[key], self.continuations[key]
        size = min(self.tokens, limit)
        for n in range(min(self.max_ngram, len(sequence)), 0, -1):
            start = index.get(tuple(sequence[-n:]))
            if start is not None and size > 0:
                draft = sequence[start:start + size]
                while len(draft) < size:  # ran into the present: go on copying the copy (a loop of short period)
                    draft.append(draft[len(draft) - (len(sequence) - start)])
                return draft
        return []

    def drop(self, key: int) -> None:
        del self.sequences[key], self.continuations[key]
