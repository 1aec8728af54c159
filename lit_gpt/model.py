"""A decoder-only transformer in plain PyTorch that covers Llama 2/3, Mistral, Qwen2/3, SmolLM2, Gemma 2/3, Phi-2/3,
Pythia and Falcon.

Every family is one set of switches on `Config`: grouped-query attention (`n_query_groups`), partial rotary
embeddings (`rotary_percentage`) and scaled ones (`rope_scaling`: Llama 3.1's bands, linear, Phi-3's longrope),
RMSNorm or LayerNorm (Gemma's scales by 1 + weight), per-head q/k norms (Qwen3, Gemma 3), SwiGLU, GeGLU or GELU MLP,
norms after attention and MLP too (Gemma), parallel residual with one or two norms, biases, tied embeddings, sliding
windows on all layers (Mistral) or on all but every k-th (Gemma, with their own rope base), soft-capped scores and
logits (Gemma 2). Rotary embeddings use the "rotate half" layout of the Hugging Face checkpoints.

Training may pack several examples into one row (`segments`): each example then sees exactly what it sees alone
(positions from 0, attention inside the example only). NEFTune noise on the embeddings is an opt-in for training.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from lit_gpt.config import Config
from lit_gpt.fused_loss import linear_cross_entropy
from lit_gpt.layers import GemmaMLP, GptNeoxMLP, LLaMAMLP, RMSNorm, make_norm
from lit_gpt.rope import apply_rope, rope_cos_sin

KV_CACHE_BLOCK_CPU = 512  # positions per block of a KV cache on CPU (see KVCache)
_LAST_ROWS: list = [None]  # rows_attending's last (mask, B, sizes, rows): every layer of a kind gets the same mask


class GPT(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=config.lm_head_bias)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
            # checkpoints of tied models store the shared matrix once, as wte.weight: a plain
            # GPT(config).load_state_dict(torch.load("lit_model.pth")) fills the head from it
            self.register_load_state_dict_pre_hook(_head_from_embedding)
        self.gradient_checkpointing = False  # recompute each block in backward: less memory, ~30% more compute
        self.neftune_noise_alpha: Optional[float] = None  # NEFTune noise on the embeddings in training (neftune_noise)
        self.compiled_blocks: Optional[list] = None  # see compile_blocks()
        self.apply(self._init_weights)

    def compile_blocks(self) -> None:
        """torch.compile each block for full-sequence passes (training, validation): the elementwise work around the
        matmuls (norms, RoPE, SwiGLU, residuals, dropout) is fused, which saves activation memory and kernel launches.
        One compiled graph serves every block (same code; parameters are graph inputs), so compile time is that of
        one block. KV-cached generation stays eager: its shapes change every step. Parameter names are unchanged
        (the compiled wrappers sit in a plain list, not in the module tree)."""
        self.compiled_blocks = [torch.compile(block) for block in self.blocks]

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        idx: torch.Tensor,
        input_pos: Optional[torch.Tensor] = None,
        output_mask: Optional[torch.Tensor] = None,
        targets: Optional[torch.Tensor] = None,
        segments: Optional[torch.Tensor] = None,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """idx: (B, T) token ids. input_pos: positions to write into the KV cache (generation), (T,) for all rows or
        (B, T), each row at its own (continuous batching: rows of different lengths, no padding); else 0..T-1.
        output_mask: (B, T) bool; when given, only those positions go through the LM head and logits are (N, vocab):
        training never spends the head's large matmul on prompt or padding positions.
        targets: (B, T) next-token ids, -100 where nothing is trained; when given, returns the summed cross-entropy
        over the trained positions (float32 scalar) instead of logits, via `linear_cross_entropy`: the head runs on
        those positions only and their (N, vocab) logits never exist all at once (training's memory peak).
        reduction "none": each trained position's cross-entropy instead, (N,) in row-major order.
        segments: (B, T) packed training rows: the example each position belongs to (0, 1, ... in the row; each
        example one contiguous run; padding a run of -1). Positions restart at 0 with each example and attention
        stays inside it, so every example gets the logits (and gradients) it would get alone."""
        B, T = idx.shape
        if segments is not None and input_pos is not None:
            raise ValueError("segments (packed training rows) cannot be combined with input_pos (generation)")
        if input_pos is None:
            pos = torch.arange(T, device=idx.device)
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens is longer than the model's block_size {self.config.block_size}")
        else:
            pos = input_pos
        # (cos, sin, mask) of global and of windowed layers: each block takes the one of its kind
        rope_pos = pos if segments is None else positions_in_segments(segments)  # (T,) or (B, T)
        rope = rope_cos_sin(rope_pos, self.config, dtype=self.wte.weight.dtype)
        local_rope = rope if self.config.rope_local_base is None else rope_cos_sin(
            rope_pos, self.config, dtype=self.wte.weight.dtype, local=True)
        cached = input_pos is not None
        kinds = {False: (*rope, self._attention_mask(pos, T, cached, None, segments))}
        if self.config.sliding_window is not None:
            kinds[True] = (*local_rope, self._attention_mask(pos, T, cached, self.config.sliding_window, segments))

        x = self.wte(idx)  # (B, T, n_embd)
        if self.neftune_noise_alpha is not None and self.training:  # before Gemma's scaling, as transformers' hook
            x = x + neftune_noise(x, self.neftune_noise_alpha, segments)
        if self.config.scale_embeddings:  # Gemma; the factor rounded to the model's dtype, as its reference does
            x = x * torch.tensor(self.config.n_embd ** 0.5, dtype=x.dtype)
        blocks = self.compiled_blocks if self.compiled_blocks is not None and input_pos is None else self.blocks
        for i, block in enumerate(blocks):
            cos, sin, mask = kinds[self.config.is_windowed(i)]
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, cos, sin, mask, input_pos, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, input_pos)
        x = self.ln_f(x)
        softcap = self.config.final_logit_softcapping
        if targets is not None:
            trained = targets != -100
            return linear_cross_entropy(x[trained], self.lm_head, targets[trained], softcap, reduction)
        if output_mask is not None:
            x = x[output_mask]
        logits = self.lm_head(x)
        return logits if softcap is None else softcap * torch.tanh(logits / softcap)

    @staticmethod
    def _attention_mask(pos: torch.Tensor, T: int, cached: bool, window: Optional[int],
                        segments: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """None means plain causal attention (SDPA's fast path). A bool mask (True = attend), (T, S), is built for
        KV-cached steps, which attend over the cache up to the newest position, and for windowed layers past the
        window; (B, 1, T, S) with per-row positions (B, T), where each row attends to its own keys up to its own
        position (its cache row holds nothing else); and for packed rows (segments)."""
        if segments is not None:
            return packed_attention_mask(segments, window)
        if not cached and (window is None or T <= window):
            return None
        keys = torch.arange(int(pos.max()) + 1 if cached else T, device=pos.device)
        mask = keys <= pos[..., None]  # (T, S), or (B, T, S) for per-row positions
        if window is not None:
            mask &= (pos[..., None] - keys) < window
        return mask if pos.ndim == 1 else mask[:, None]

    def set_kv_cache(self, batch_size: int, max_seq_length: Optional[int] = None,
                     device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        max_seq_length = min(max_seq_length or self.config.block_size, self.config.block_size)
        device = torch.device(device or self.wte.weight.device)
        dtype = dtype or self.wte.weight.dtype
        # on CPU the cache is read by `grouped_attention`'s matmuls, block by block (see KVCache); CUDA's SDPA reads
        # the first positions of one block in place
        block = KV_CACHE_BLOCK_CPU if device.type == "cpu" else None
        for layer in self.blocks:
            layer.attn.kv_cache = KVCache(batch_size, self.config.n_query_groups, max_seq_length,
                                          self.config.head_size, device, dtype, block)

    def clear_kv_cache(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = None


def _run_starts(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: True where a run of equal segment ids (an example, or the padding) begins."""
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    return starts


def positions_in_segments(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) each position's offset from the start of its run of equal segment ids: 0, 1, 2, 0, 1, ..."""
    t = torch.arange(segments.shape[1], device=segments.device).expand_as(segments)
    return t - torch.where(_run_starts(segments), t, 0).cummax(dim=1).values  # minus the latest start so far


def packed_attention_mask(segments: torch.Tensor, window: Optional[int]) -> torch.Tensor:
    """(B, 1, T, T) bool, True = attend: causal, inside the query's own example, within the window if any.
    A padding position (negative id) attends to itself only: its output is never used, but a row of -inf would
    softmax to NaN."""
    T = segments.shape[1]
    t = torch.arange(T, device=segments.device)
    mask = t[None, :] <= t[:, None]  # (T, T) causal
    if window is not None:  # examples are contiguous: distance in the row = distance in the example
        mask &= (t[:, None] - t[None, :]) < window
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] >= 0)  # (B, T, T)
    mask = (mask & same) | torch.eye(T, dtype=torch.bool, device=segments.device)
    return mask[:, None]


def neftune_noise(x: torch.Tensor, alpha: float, segments: Optional[torch.Tensor] = None) -> torch.Tensor:
    """NEFTune (Jain et al. 2023) noise for embeddings x (B, T, d): uniform in [-1, 1] scaled by alpha / sqrt(L d),
    L the sequence length: a packed example's own (segments given), else the row's T as in transformers' NEFTune
    hook. Drawn from torch's global RNG (the training step seeds it per step, so a resumed run draws the same)."""
    B, T, d = x.shape
    if segments is None:
        lengths = torch.full((B, T), T, device=x.device)
    else:  # the length of each position's run of equal ids, by counting the positions of each run
        run = _run_starts(segments).long().cumsum(dim=1) - 1  # (B, T) the run each position is in
        lengths = torch.zeros_like(run).scatter_add_(1, run, torch.ones_like(run)).gather(1, run)
    scale = alpha / (lengths.double() * d).sqrt()  # (B, T)
    return torch.empty_like(x).uniform_(-1.0, 1.0) * scale[..., None].to(x.dtype)


def _head_from_embedding(module: "GPT", state_dict: dict, prefix: str, *args) -> None:
    if prefix + "lm_head.weight" not in state_dict and prefix + "wte.weight" in state_dict:
        state_dict[prefix + "lm_head.weight"] = state_dict[prefix + "wte.weight"]


class Block(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.norm_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm_2 = None if config.shared_attention_norm else make_norm(config)
        self.mlp = {"LLaMAMLP": LLaMAMLP, "GemmaMLP": GemmaMLP, "GptNeoxMLP": GptNeoxMLP}[config.mlp_class_name](config)
        # Gemma norms each branch's output too, before it joins the residual stream
        self.post_attention_norm = make_norm(config) if config.post_block_norms else nn.Identity()
        self.post_mlp_norm = make_norm(config) if config.post_block_norms else nn.Identity()
        self.parallel_residual = config.parallel_residual

    def forward(self, x, cos, sin, mask=None, input_pos=None):
        n_1 = self.norm_1(x)
        h = self.post_attention_norm(self.attn(n_1, cos, sin, mask, input_pos))
        if self.parallel_residual:  # x + attn(norm(x)) + mlp(norm(x)): GPT-NeoX, Phi, Falcon
            n_2 = n_1 if self.norm_2 is None else self.norm_2(x)
            return x + h + self.mlp(n_2)
        x = x + h
        return x + self.post_mlp_norm(self.mlp(self.norm_2(x)))


class CausalSelfAttention(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        hs, qkv_bias = config.head_size, config.bias or config.attn_bias
        self.q = nn.Linear(config.n_embd, config.n_head * hs, bias=qkv_bias)
        self.k = nn.Linear(config.n_embd, config.n_query_groups * hs, bias=qkv_bias)
        self.v = nn.Linear(config.n_embd, config.n_query_groups * hs, bias=qkv_bias)
        self.proj = nn.Linear(config.n_head * hs, config.n_embd, bias=config.bias)
        # Qwen3 and Gemma 3 normalize each head's queries and keys (over head_size) before RoPE
        self.norm_q = RMSNorm(hs, config.norm_eps, config.norm_unit_offset) if config.norm_qk else nn.Identity()
        self.norm_k = RMSNorm(hs, config.norm_eps, config.norm_unit_offset) if config.norm_qk else nn.Identity()
        self.n_head, self.n_query_groups, self.head_size = config.n_head, config.n_query_groups, hs
        self.rope_n_elem = config.rope_n_elem
        self.scale = (config.attention_scores_scalar or hs) ** -0.5
        self.softcap = config.attention_logit_softcapping
        self.kv_cache: Optional[KVCache] = None

    def forward(self, x, cos, sin, mask=None, input_pos=None):
        B, T, _ = x.shape
        q = self.norm_q(self.q(x).view(B, T, self.n_head, self.head_size)).transpose(1, 2)  # (B, n_head, T, hs)
        k = self.norm_k(self.k(x).view(B, T, self.n_query_groups, self.head_size)).transpose(1, 2)  # (B, n_groups, T, hs)
        v = self.v(x).view(B, T, self.n_query_groups, self.head_size).transpose(1, 2)
        q = apply_rope(q, cos, sin, self.rope_n_elem)
        k = apply_rope(k, cos, sin, self.rope_n_elem)
        if input_pos is not None:
            if self.kv_cache is None:
                raise RuntimeError("input_pos given but no KV cache: call model.set_kv_cache() first")
            k, v = self.kv_cache(input_pos, k, v, mask.shape[-1])  # lists of whole blocks of positions
            if x.device.type != "cpu":  # SDPA reads one tensor: the first mask.shape[-1] positions
                k, v = (joined_positions(blocks, mask.shape[-1]) for blocks in (k, v))
        if self.softcap is not None or isinstance(k, list):  # capped scores, or a cached step on CPU
            y = grouped_attention(q, k, v, mask, self.scale, self.softcap)
        else:  # each group of n_head // n_query_groups query heads shares one key/value head
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.scale,
                                               enable_gqa=self.n_query_groups != self.n_head)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_size))


def joined_positions(blocks: "list[torch.Tensor]", length: int) -> torch.Tensor:
    """The first `length` positions of a KV cache's blocks as one (B, n_groups, length, hs) tensor: a view when
    they lie in one block (CUDA's single block), a copy otherwise."""
    return blocks[0][:, :, :length] if len(blocks) == 1 else torch.cat(blocks, dim=2)[:, :, :length]


def grouped_attention(q, k, v, mask, scale: float, softcap: Optional[float] = None) -> torch.Tensor:
    """The textbook softmax(q k^T * scale) v, each key/value head read once for its whole group of query heads
    (stacked as one longer query: one batched matmul per key/value head). Used where SDPA does not fit: Gemma 2's
    capped scores, cap * tanh(scores / cap); and KV-cached steps on CPU, where reading the cache is the step's time:
    PyTorch's CPU SDPA reads it once per query head (3x for SmolLM2's 9 heads in 3 groups) and is slow in bf16, while
    these matmuls read each block once, in place, in the model's dtype, for the rows that attend it only
    (`rows_attending`). Scores in the model's dtype, the softmax summed in float32 (as transformers' eager).
    q (B, n_head, T, hs); k, v (B, n_groups, S, hs) or lists of blocks (B, n_groups, S_j, hs) of the S positions in
    order (`KVCache`); mask (T, S') or (B, 1, T, S') bool (True = attend), S' <= S (the positions from S' on are
    not attended: whole blocks of a cache), or None (causal, T = S). Returns (B, n_head, T, hs)."""
    keys, values = (k, v) if isinstance(k, list) else ([k], [v])
    B, n_head, T, hs = q.shape
    sizes = [block.shape[2] for block in keys]
    n_groups, S = keys[0].shape[1], sum(sizes)
    if mask is None:
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
    rows = rows_attending(mask, B, sizes) if len(keys) > 1 else [(0, B)]  # before the pad: the same mask per layer
    if mask.shape[-1] < S:  # whole blocks of a KV cache: the positions past the mask's are not attended
        mask = F.pad(mask, (0, S - mask.shape[-1]), value=False)
    # the scale on the queries (a few numbers) rather than on the scores; the heads of a group one after another
    q = (q * scale).reshape(B, n_groups, n_head // n_groups * T, hs)
    # (b - a, n_groups, heads x T, S_j) for each block: its rows a..b-1 only
    parts = [q[a:b] @ block[a:b].transpose(-2, -1) for (a, b), block in zip(rows, keys)]
    if all(ab == (0, B) for ab in rows):
        scores = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # (B, n_groups, heads x T, S)
    else:  # the positions of rows that skipped a block stay 0 until the mask removes them
        scores, start = q.new_zeros(B, n_groups, q.shape[2], S), 0
        for (a, b), part, n in zip(rows, parts, sizes):
            scores[a:b, ..., start: start + n], start = part, start + n
    scores = scores.view(B, n_groups, n_head // n_groups, T, S)
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    mask = mask[:, :, None] if mask.ndim == 4 else mask  # (B, 1, 1, T, S): the same for every head
    # masked in place (the scores are this function's own); a bf16/fp16 softmax sums in float32 and rounds once
    probs = F.softmax(scores.masked_fill_(~mask, float("-inf")), dim=-1).view(B, n_groups, -1, S)
    if len(values) == 1:
        return (probs @ values[0]).view(B, n_head, T, hs)
    y, start = q.new_zeros(B, n_groups, q.shape[2], hs), 0
    for (a, b), block, n in zip(rows, values, sizes):  # the weighted sum over each block, added in place
        y[a:b].flatten(0, 1).baddbmm_(probs[a:b, ..., start: start + n].flatten(0, 1), block[a:b].flatten(0, 1))
        start += n
    return y.view(B, n_head, T, hs)


def rows_attending(mask: torch.Tensor, B: int, sizes: "list[int]") -> "list[tuple[int, int]]":
    """For each block of `sizes` positions, the rows (first, last + 1) that attend any of its positions, (0, 0) if none:
    shorter rows and passed sliding windows skip blocks. mask (T, S) (rows alike) or (B, 1, T, S), S <= sum(sizes)
    (later positions unattended). Worked out once per mask object: the step's other layers reuse the answer."""
    last = _LAST_ROWS[0]
    if last is not None and last[0] is mask and last[1:3] == (B, list(sizes)) and not torch.compiler.is_compiling():
        return last[3]
    attended = F.pad(mask.reshape(-1, mask.shape[-2], mask.shape[-1]).any(dim=1), (0, sum(sizes) - mask.shape[-1]))
    counts = F.pad(attended.cumsum(dim=-1), (1, 0))  # counts[:, s] = attended positions before s
    ends = torch.tensor(sizes, device=mask.device).cumsum(0)
    in_block = (counts[:, ends] - counts[:, ends - torch.tensor(sizes, device=mask.device)]) > 0  # (B or 1, blocks)
    hits = [[b for b, hit in enumerate(column) if hit] for column in in_block.T.tolist()]
    rows = [(0, 0) if not h else (0, B) if attended.shape[0] == 1 else (h[0], h[-1] + 1) for h in hits]
    _LAST_ROWS[0] = (mask, B, list(sizes), rows)
    return rows


class KVCache(nn.Module):
    """Keys and values of `batch_size` sequences, allocated once at full size: steps write into it in place and
    read views of it, nothing grows or is copied. The model's batch row b is cache row first_row + b, so that
    continuous batching (`lit_gpt.infer.cache`) can prefill a new prompt alone into a free row.

    The positions are stored in blocks of `block` (default: all in one), (n_blocks, batch, n_groups, block, hs), so
    that each block of all rows is one contiguous (batch, n_groups, block, hs) tensor: CPU matmuls read such a
    tensor in place, while a slice of the first `length` positions of a longer cache has rows `max_seq_length`
    apart and is copied by every bf16 matmul that reads it (3 ms against 0.4 for 32 rows x 1,000 keys)."""

    def __init__(self, batch_size, n_groups, max_seq_length, head_size, device, dtype,
                 block: Optional[int] = None) -> None:
        super().__init__()
        self.block = min(block or max_seq_length, max_seq_length)
        self.max_seq_length = max_seq_length
        shape = (-(-max_seq_length // self.block), batch_size, n_groups, self.block, head_size)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.first_row = 0

    def forward(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                length: int) -> "tuple[list[torch.Tensor], list[torch.Tensor]]":
        """Writes the new keys/values (B, n_groups, T, hs) at `input_pos`, (T,) or (B, T) per row; returns the
        blocks that hold the rows' first `length` positions (`length` = the newest position + 1, so it also bounds
        the positions): lists of whole blocks (B, n_groups, block, hs), in order. The last block's positions from
        `length` on hold zeros or the keys of an earlier sequence of the row: the attention masks them (a slice
        would be copied by the matmuls that read it, which costs more than reading those positions)."""
        if length > self.max_seq_length:
            raise ValueError(f"position {length - 1} is past the KV cache length {self.max_seq_length}")
        B, T = k.shape[0], k.shape[2]
        rows = torch.arange(self.first_row, self.first_row + B, device=k.device)[:, None]  # (B, 1)
        pos = input_pos.expand(B, T)
        # row b's t-th keys go to slot [pos // block, row b, :, pos % block]: (B, T) indices pick (B, T, n_groups, hs)
        self.k[pos // self.block, rows, :, pos % self.block] = k.transpose(1, 2).to(self.k.dtype)
        self.v[pos // self.block, rows, :, pos % self.block] = v.transpose(1, 2).to(self.v.dtype)
        return self.blocks(self.k, B, length), self.blocks(self.v, B, length)

    def blocks(self, buffer: torch.Tensor, batch_size: int, length: int) -> "list[torch.Tensor]":
        rows = slice(self.first_row, self.first_row + batch_size)
        return [buffer[j, rows] for j in range(-(-length // self.block))]

    def move_row(self, source: int, target: int, length: int) -> None:
        """Copies row `source`'s first `length` positions into row `target`."""
        for j in range(-(-length // self.block)):
            n = min(self.block, length - j * self.block)
            self.k[j, target, :, :n] = self.k[j, source, :, :n]
            self.v[j, target, :, :n] = self.v[j, source, :, :n]

    def swap_rows(self, i: int, j: int, length: int) -> None:
        """Exchanges rows `i` and `j`'s first `length` positions (whole blocks)."""
        blocks = slice(0, -(-length // self.block))
        for buffer in (self.k, self.v):
            buffer[blocks, [i, j]] = buffer[blocks, [j, i]]


def flops_per_token(config: Config, seq_len: int) -> float:
    """Forward+backward matmul FLOPs per token (6 x params in matmuls + attention), for MFU reports."""
    hs, d = config.head_size, config.n_embd
    attn_params = d * hs * (config.n_head * 2 + config.n_query_groups * 2)
    n_mlp = 2 if config.mlp_class_name == "GptNeoxMLP" else 3
    mlp_params = n_mlp * d * config.intermediate_size
    matmul_params = config.n_layer * (attn_params + mlp_params) + d * config.vocab_size
    attn_flops = config.n_layer * 2 * 2 * config.n_head * hs * seq_len / 2  # causal QK^T and AV, half the square
    return 6 * matmul_params + 3 * attn_flops

