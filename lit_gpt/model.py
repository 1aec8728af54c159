"""A decoder-only transformer in plain PyTorch that covers Llama, Mistral, Qwen2, SmolLM2, Pythia, Phi and Falcon.

Every family is one set of switches on `Config`: grouped-query attention (`n_query_groups`), partial rotary
embeddings (`rotary_percentage`), RMSNorm or LayerNorm, SwiGLU or GELU MLP, parallel residual with one or two norms,
biases, tied embeddings. Rotary embeddings use the "rotate half" layout of the Hugging Face checkpoints.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from lit_gpt.config import Config
from lit_gpt.fused_loss import linear_cross_entropy


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
    ) -> torch.Tensor:
        """idx: (B, T) token ids. input_pos: (T,) positions to write into the KV cache (generation), else 0..T-1.
        output_mask: (B, T) bool; when given, only those positions go through the LM head and logits are (N, vocab):
        training never spends the head's large matmul on prompt or padding positions.
        targets: (B, T) next-token ids, -100 where nothing is trained; when given, returns the summed cross-entropy
        over the trained positions (float32 scalar) instead of logits, via `linear_cross_entropy`: the head runs on
        those positions only and their (N, vocab) logits never exist all at once (training's memory peak)."""
        B, T = idx.shape
        if input_pos is None:
            pos = torch.arange(T, device=idx.device)
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens is longer than the model's block_size {self.config.block_size}")
        else:
            pos = input_pos
        cos, sin = rope_cos_sin(pos, self.config.rope_n_elem, self.config.rope_base, dtype=self.wte.weight.dtype)
        mask = self._attention_mask(pos, T, input_pos is not None)

        x = self.wte(idx)
        blocks = self.compiled_blocks if self.compiled_blocks is not None and input_pos is None else self.blocks
        for block in blocks:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, cos, sin, mask, input_pos, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, input_pos)
        x = self.ln_f(x)
        if targets is not None:
            trained = targets != -100
            return linear_cross_entropy(x[trained], self.lm_head, targets[trained])
        if output_mask is not None:
            x = x[output_mask]
        return self.lm_head(x)

    def _attention_mask(self, pos: torch.Tensor, T: int, cached: bool) -> Optional[torch.Tensor]:
        """None means plain causal attention (SDPA's fast path). A bool mask (True = attend) is built for KV-cached
        steps, which attend over the cache up to the newest position, and for sliding-window models past the window."""
        window = self.config.sliding_window
        if not cached and (window is None or T <= window):
            return None
        keys = torch.arange(int(pos.max()) + 1 if cached else T, device=pos.device)
        mask = keys[None, :] <= pos[:, None]
        if window is not None:
            mask &= (pos[:, None] - keys[None, :]) < window
        return mask

    def set_kv_cache(self, batch_size: int, max_seq_length: Optional[int] = None,
                     device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        max_seq_length = min(max_seq_length or self.config.block_size, self.config.block_size)
        device = device or self.wte.weight.device
        dtype = dtype or self.wte.weight.dtype
        for block in self.blocks:
            block.attn.kv_cache = KVCache(batch_size, self.config.n_query_groups, max_seq_length,
                                          self.config.head_size, device, dtype)

    def clear_kv_cache(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = None


def _head_from_embedding(module: "GPT", state_dict: dict, prefix: str, *args) -> None:
    if prefix + "lm_head.weight" not in state_dict and prefix + "wte.weight" in state_dict:
        state_dict[prefix + "lm_head.weight"] = state_dict[prefix + "wte.weight"]


class Block(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.norm_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm_2 = None if config.shared_attention_norm else make_norm(config)
        self.mlp = LLaMAMLP(config) if config.mlp_class_name == "LLaMAMLP" else GptNeoxMLP(config)
        self.parallel_residual = config.parallel_residual

    def forward(self, x, cos, sin, mask=None, input_pos=None):
        n_1 = self.norm_1(x)
        h = self.attn(n_1, cos, sin, mask, input_pos)
        if self.parallel_residual:  # x + attn(norm(x)) + mlp(norm(x)): GPT-NeoX, Phi, Falcon
            n_2 = n_1 if self.norm_2 is None else self.norm_2(x)
            return x + h + self.mlp(n_2)
        x = x + h
        return x + self.mlp(self.norm_2(x))


class CausalSelfAttention(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        hs, qkv_bias = config.head_size, config.bias or config.attn_bias
        self.q = nn.Linear(config.n_embd, config.n_head * hs, bias=qkv_bias)
        self.k = nn.Linear(config.n_embd, config.n_query_groups * hs, bias=qkv_bias)
        self.v = nn.Linear(config.n_embd, config.n_query_groups * hs, bias=qkv_bias)
        self.proj = nn.Linear(config.n_head * hs, config.n_embd, bias=config.bias)
        self.n_head, self.n_query_groups, self.head_size = config.n_head, config.n_query_groups, hs
        self.rope_n_elem = config.rope_n_elem
        self.kv_cache: Optional[KVCache] = None

    def forward(self, x, cos, sin, mask=None, input_pos=None):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, n_head, T, hs)
        k = self.k(x).view(B, T, self.n_query_groups, self.head_size).transpose(1, 2)  # (B, n_groups, T, hs)
        v = self.v(x).view(B, T, self.n_query_groups, self.head_size).transpose(1, 2)
        q = apply_rope(q, cos, sin, self.rope_n_elem)
        k = apply_rope(k, cos, sin, self.rope_n_elem)
        if input_pos is not None:
            if self.kv_cache is None:
                raise RuntimeError("input_pos given but no KV cache: call model.set_kv_cache() first")
            k, v = self.kv_cache(input_pos, k, v, mask.shape[-1])
        # each group of n_head // n_query_groups query heads shares one key/value head
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                           enable_gqa=self.n_query_groups != self.n_head)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_size))


class KVCache(nn.Module):
    def __init__(self, batch_size, n_groups, max_seq_length, head_size, device, dtype) -> None:
        super().__init__()
        shape = (batch_size, n_groups, max_seq_length, head_size)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def forward(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int):
        """Writes the new keys/values at `input_pos`, returns the cache's first `length` positions."""
        if int(input_pos.max()) >= self.k.shape[2]:
            raise ValueError(f"position {int(input_pos.max())} is past the KV cache length {self.k.shape[2]}")
        self.k.index_copy_(2, input_pos, k.to(self.k.dtype))
        self.v.index_copy_(2, input_pos, v.to(self.v.dtype))
        return self.k[:, :, :length], self.v[:, :, :length]


class LLaMAMLP(nn.Module):
    """SwiGLU: proj(silu(fc_1(x)) * fc_2(x)); fc_1 is HF's gate_proj, fc_2 its up_proj."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.fc_1 = nn.Linear(config.n_embd, config.intermediate_size, bias=config.bias)
        self.fc_2 = nn.Linear(config.n_embd, config.intermediate_size, bias=config.bias)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.proj(F.silu(self.fc_1(x)) * self.fc_2(x))


class GptNeoxMLP(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.intermediate_size, bias=config.bias)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approximate

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


class RMSNorm(nn.Module):
    """Normalizes in float32 and casts back before the weight, as the Llama reference does."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def make_norm(config: Config) -> nn.Module:
    if config.norm_class_name == "RMSNorm":
        return RMSNorm(config.n_embd, config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps)


def rope_cos_sin(pos: torch.Tensor, n_elem: int, base: float, dtype: torch.dtype):
    """cos/sin tables (T, n_elem) for positions `pos`, computed in float32 then cast (as the HF models do)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, n_elem, 2, device=pos.device, dtype=torch.float32) / n_elem))
    freqs = torch.outer(pos.float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_elem: int) -> torch.Tensor:
    """Rotates the first n_elem dims of each head ("rotate half" layout); the rest pass through (partial rotary)."""
    if n_elem == 0:
        return x
    x_rope, x_pass = x[..., :n_elem], x[..., n_elem:]
    x1, x2 = x_rope[..., : n_elem // 2], x_rope[..., n_elem // 2:]
    rotated = torch.cat((-x2, x1), dim=-1)
    x_rope = x_rope * cos + rotated * sin
    return torch.cat((x_rope, x_pass), dim=-1) if x_pass.shape[-1] else x_rope


def flops_per_token(config: Config, seq_len: int) -> float:
    """Forward+backward matmul FLOPs per token (6 x params in matmuls + attention), for MFU reports."""
    hs, d = config.head_size, config.n_embd
    attn_params = d * hs * (config.n_head * 2 + config.n_query_groups * 2)
    n_mlp = 3 if config.mlp_class_name == "LLaMAMLP" else 2
    mlp_params = n_mlp * d * config.intermediate_size
    matmul_params = config.n_layer * (attn_params + mlp_params) + d * config.vocab_size
    attn_flops = config.n_layer * 2 * 2 * config.n_head * hs * seq_len / 2  # causal QK^T and AV, half the square
    return 6 * matmul_params + 3 * attn_flops

