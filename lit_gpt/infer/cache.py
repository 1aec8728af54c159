"""The rows of continuous batching: a fixed number of KV-cache rows, each holding one prompt's sequence.

`RowCache` allocates the model's KV cache once (`GPT.set_kv_cache`: rows x groups x max_seq_length x head_size
per layer, in blocks of positions on CPU (`lit_gpt.model.KVCache`), never grown) and keeps what a decode step
reads: each row's last token and its length, the position that token goes to. Rows 0..active-1 are in use, so a
decode step runs the first `active` rows of every buffer (views, no copies), each at its own position with its own
key mask (`GPT.forward` with (B, T) positions): no padding anywhere. A new prompt is prefilled alone into a free
row, in chunks; a row whose answer ended is given to the next prompt, or, when no prompt waits, the last active row
moves into it (one copy per ended row, not per step) so the active rows stay contiguous. Which prompt runs when is
the caller's business (`lit_gpt.infer.sampling`).
"""

from typing import Optional

import torch

from lit_gpt.model import GPT

PREFILL_CHUNK = 512  # prompt tokens per prefill forward: bounds the (T, S) masks and activations of long prompts


def rope_refill_position(config) -> Optional[int]:
    """The position whose token makes longrope (Phi-3) switch from its short to its long frequency factors for the
    whole sequence; generation recomputes that row's KV cache there, as transformers' Phi-3 does. None for other
    models. Each row switches at its own length (`lit_gpt.rope.rope_cos_sin` with per-row positions)."""
    scaling = config.rope_scaling or {}
    return scaling["original_max_position_embeddings"] if scaling.get("rope_type") == "longrope" else None


class RowCache:
    def __init__(self, model: GPT, rows: int, max_seq_length: int, device: torch.device,
                 compile: bool = False) -> None:
        """`rows` rows of `max_seq_length` positions. compile: the decode step through torch.compile with dynamic
        shapes (the batch and key lengths change every step; one graph serves them); prefills stay eager."""
        model.set_kv_cache(rows, max_seq_length, device=device)
        self.model, self.capacity = model, rows
        self.decode = torch.compile(model, dynamic=True) if compile else model
        self.tokens = torch.zeros(rows, 1, dtype=torch.long, device=device)  # each row's next input
        self.positions = torch.zeros(rows, 1, dtype=torch.long, device=device)  # where it goes: the row's length
        self.owner: list[int] = []  # which prompt each active row holds
        self.length: list[int] = []  # tokens in each active row's cache (positions, on the host)
        # longrope picks its factors by the longest position of a forward: a prompt runs in one piece there
        self.chunk = PREFILL_CHUNK if rope_refill_position(model.config) is None else model.config.block_size

    @property
    def active(self) -> int:
        return len(self.owner)

    def prefill(self, ids: torch.Tensor, row: int) -> torch.Tensor:
        """Runs the sequence `ids` (1D) alone into cache row `row` from position 0, `chunk` tokens per forward;
        returns the logits after its last token, (1, vocab): the LM head runs on that position only."""
        self._set_first_row(row)
        try:
            for start in range(0, ids.numel(), self.chunk):
                piece = ids[None, start: start + self.chunk]
                last = torch.zeros_like(piece, dtype=torch.bool)
                last[:, -1] = start + piece.shape[1] == ids.numel()  # earlier pieces need no logits at all
                positions = torch.arange(start, start + piece.shape[1], device=ids.device)
                logits = self.model(piece, input_pos=positions, output_mask=last)
        finally:
            self._set_first_row(0)
        return logits

    def put(self, row: int, owner: int, token: torch.Tensor, length: int) -> None:
        """Row `row` (a freed row or the next free one) now holds prompt `owner`, prefilled to `length` tokens;
        `token` (its newest) is the row's next input."""
        self.tokens[row], self.positions[row] = token.view(1), length
        if row == self.active:
            self.owner.append(owner)
            self.length.append(length)
        else:
            self.owner[row], self.length[row] = owner, length

    def step(self) -> torch.Tensor:
        """One decode step: every active row's token at its position. Returns the next logits (active, vocab)."""
        n = self.active
        # compiled, the step runs a power of two of rows (free rows sit at position 0, where their writes are
        # overwritten by the next prefill): a few batch shapes, so a few graphs, as the rows dwindle at the end
        rows = n if self.decode is self.model else min(self.capacity, 1 << (n - 1).bit_length())
        logits = self.decode(self.tokens[:rows], input_pos=self.positions[:rows])[:n, -1]
        self.positions[:n] += 1
        self.length = [length + 1 for length in self.length]
        return logits

    def set_next(self, tokens: torch.Tensor) -> None:
        """The tokens (active, 1) just sampled are the rows' next inputs."""
        self.tokens[:self.active] = tokens

    def leave(self, row: int) -> None:
        """Frees `row`: the last active row moves into it (its cache up to its length, its token and position)."""
        last = self.active - 1
        if row != last:
            n = self.length[last]
            for block in self.model.blocks:
                block.attn.kv_cache.move_row(last, row, n)
            self.tokens[row], self.positions[row] = self.tokens[last], self.positions[last]
            self.owner[row], self.length[row] = self.owner[last], n
        self.positions[last] = 0
        self.owner.pop()
        self.length.pop()

    def close(self) -> None:
        self.model.clear_kv_cache()

    def _set_first_row(self, row: int) -> None:
        for block in self.model.blocks:
            block.attn.kv_cache.first_row = row
