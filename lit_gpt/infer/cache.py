"""The rows of continuous batching: a fixed number of KV-cache rows, each holding one prompt's sequence.

`RowCache` allocates the model's KV cache once (`GPT.set_kv_cache`: rows x groups x max_seq_length x head_size
per layer, in blocks of positions on CPU (`lit_gpt.model.KVCache`), never grown) and keeps what a decode step
reads: each row's last token and its length, the position that token goes to. Rows 0..active-1 are in use, so a
decode step runs the first `active` rows of every buffer (views, no copies), each at its own position with its own
key mask (`GPT.forward` with (B, T) positions): no padding anywhere. A new prompt is prefilled alone into the
first free row, in chunks.

On CPU the cache is stored in blocks of positions (`lit_gpt.model.KVCache`), and a decode step reads a block only for
the rows from the first to the last that attend it (`lit_gpt.model.rows_attending`). So the rows are kept in order
of the blocks their next step reads, most first: then the rows that read a block are always the first ones, and a
row that is shorter than the longest reads only its own blocks, not the longest row's. The order costs a few row
copies when a row grows into a new block (it swaps with the first row of its old group) or ends (the hole it leaves
passes to the end, one move per group behind it), never a copy per step. Which prompt runs when is the caller's
business (`lit_gpt.infer.sampling`).

A step may feed each row's token followed by draft tokens (`lit_gpt.infer.lookup`), T positions per row at the
row's next positions: the cache holds `lookahead` positions more for them, the causal mask keeps each position to
the keys before it, and `advance` moves each row on by the tokens it keeps; what the others wrote lies past the
row's length, masked, and is overwritten by its next step.
"""

from typing import Optional

import torch

from lit_gpt.model import GPT

PREFILL_CHUNK = 512  # prompt tokens per prefill forward: bounds the (T, S) masks and activations of long prompts
# rows x T of a CPU decode step with draft tokens: past about this many positions the step's matmuls are bound by
# compute on the 2-core CPU measured (README, Evaluation), so more draft positions cost more than they save; on
# CUDA a step of a few hundred positions is still bound by reading the weights, and drafts are not capped
DRAFT_POSITIONS_CPU = 192


def rope_refill_position(config) -> Optional[int]:
    """The position whose token makes longrope (Phi-3) switch from its short to its long frequency factors for the
    whole sequence; generation recomputes that row's KV cache there, as transformers' Phi-3 does. None for other
    models. Each row switches at its own length (`lit_gpt.rope.rope_cos_sin` with per-row positions)."""
    scaling = config.rope_scaling or {}
    return scaling["original_max_position_embeddings"] if scaling.get("rope_type") == "longrope" else None


class RowCache:
    def __init__(self, model: GPT, rows: int, max_seq_length: int, device: torch.device,
                 compile: bool = False, lookahead: int = 0) -> None:
        """`rows` rows of `max_seq_length` positions, and `lookahead` more for the draft tokens a step may feed
        after a row's token (`step`). compile: the decode step through torch.compile with dynamic shapes (the
        batch and key lengths change every step; one graph serves them); prefills stay eager."""
        model.set_kv_cache(rows, max_seq_length + lookahead, device=device)
        self.model, self.capacity, self.lookahead = model, rows, lookahead
        self.block = model.blocks[0].attn.kv_cache.block  # positions per block of the cache
        self.positions_held = model.blocks[0].attn.kv_cache.max_seq_length  # at most the model's block_size
        self.draft_positions = DRAFT_POSITIONS_CPU if device.type == "cpu" else rows * (1 + lookahead)
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
        """Row `row` (the next free one) now holds prompt `owner`, prefilled to `length` tokens; `token` (its
        newest) is the row's next input."""
        if row != self.active:
            raise ValueError(f"row {row} is not the first free row ({self.active})")
        self.tokens[row], self.positions[row] = token.view(1), length
        self.owner.append(owner)
        self.length.append(length)

    def step(self, drafts: Optional[dict] = None) -> torch.Tensor:
        """One decode step: every active row's token at its position, followed by the draft tokens `drafts` gives
        for the row's prompt (owner -> list of ids, at most `lookahead`; none for rows it lacks). Returns the logits
        after each fed token, (active, T, vocab) with T = 1 + the longest draft, in the rows' order after
        `_order_rows` (owner and length say which prompt each row is). A row with a shorter draft feeds copies of
        its token after it: their logits mean nothing, and whatever they write lies past what the row keeps.
        `advance` then says how many of the fed tokens each row keeps."""
        drafts = drafts or {}
        self._order_rows()
        n = self.active
        # T is bounded by the positions the cache holds (only near the model's block_size is a draft shortened)
        # and, on CPU, by the positions a step may run
        T = 1 + min(max((len(drafts.get(owner, ())) for owner in self.owner), default=0), self.lookahead,
                    self.positions_held - 1 - max(self.length), max(self.draft_positions // n - 1, 0))
        # compiled, the step runs a power of two of rows (free rows sit at position 0, where their writes are
        # overwritten by the next prefill): a few batch shapes, so a few graphs, as the rows dwindle at the end
        rows = n if self.decode is self.model else min(self.capacity, 1 << (n - 1).bit_length())
        tokens, positions = self.tokens[:rows], self.positions[:rows]
        if T > 1:
            tokens = tokens.repeat(1, T)
            for row, owner in enumerate(self.owner):
                draft = drafts.get(owner, ())[:T - 1]
                tokens[row, 1:1 + len(draft)] = torch.tensor(draft, dtype=torch.long)
            positions = positions + torch.arange(T, device=positions.device)
        return self.decode(tokens, input_pos=positions)[:n]

    def advance(self, kept: "list[int]", tokens: torch.Tensor) -> None:
        """After a step: each active row keeps its first `kept[row]` fed tokens (its token and the draft tokens that
        greedy decoding confirmed), and `tokens` (active, 1), just sampled, are the rows' next inputs."""
        n = self.active
        self.positions[:n] += torch.tensor(kept, dtype=torch.long, device=self.positions.device)[:, None]
        self.length = [length + k for length, k in zip(self.length, kept)]
        self.tokens[:n] = tokens

    def leave(self, row: int) -> None:
        """Frees `row`; the rows behind it move up, one move per group of rows that read the same number of blocks
        (the group's last row fills the hole), so the rows stay in order and contiguous."""
        blocks, last, hole = self._blocks_read(), self.active - 1, row
        while hole < last:
            end = max(r for r in range(hole + 1, last + 1) if blocks[r] == blocks[hole + 1])  # the next group's last
            self._move(end, hole)
            blocks[hole], hole = blocks[end], end
        self.positions[last] = 0  # a free row's writes land at position 0, overwritten by its next prefill
        self.owner.pop()
        self.length.pop()

    def _blocks_read(self) -> "list[int]":
        """For each active row, the number of cache blocks its next step reads (up to its next position and the
        draft tokens after it: counted at the most, so that a row does not swap back and forth when its drafts
        come and go)."""
        return [(length + self.lookahead) // self.block + 1 for length in self.length]

    def _order_rows(self) -> None:
        """Rows in order of the blocks they read, most first: each row that reads more than the one before it swaps
        with the first row that reads fewer (one swap per row that grew into a new block; more only for a long
        prompt just put at the end)."""
        blocks = self._blocks_read()
        for r in range(1, len(blocks)):
            while blocks[r] > blocks[r - 1]:
                first = next(i for i in range(r) if blocks[i] < blocks[r])
                self._swap(first, r)
                blocks[first], blocks[r] = blocks[r], blocks[first]

    def _move(self, source: int, target: int) -> None:
        """Row `source` (its cache up to its length, token, position, owner) into row `target`."""
        for layer in self.model.blocks:
            layer.attn.kv_cache.move_row(source, target, self.length[source])
        self.tokens[target], self.positions[target] = self.tokens[source], self.positions[source]
        self.owner[target], self.length[target] = self.owner[source], self.length[source]

    def _swap(self, i: int, j: int) -> None:
        """Rows `i` and `j` trade places: caches (up to the longer length), tokens, positions, owners, lengths."""
        for layer in self.model.blocks:
            layer.attn.kv_cache.swap_rows(i, j, max(self.length[i], self.length[j]))
        for values in (self.tokens, self.positions):
            values[[i, j]] = values[[j, i]]
        for values in (self.owner, self.length):
            values[i], values[j] = values[j], values[i]

    def close(self) -> None:
        self.model.clear_kv_cache()

    def _set_first_row(self, row: int) -> None:
        for block in self.model.blocks:
            block.attn.kv_cache.first_row = row
