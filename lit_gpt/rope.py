"""Rotary position embeddings (RoPE) in the "rotate half" layout of the Hugging Face checkpoints: the per-pair
frequencies with their scalings (linear, Llama 3.1's bands, Phi-3's longrope), the cos/sin tables for given positions
(one sequence, or each row at its own positions) and the rotation itself. `lit_gpt.model` applies them to each
head's queries and keys.
"""

import math
from typing import Optional

import torch

from lit_gpt.config import Config


def inverse_frequencies(n_elem: int, base: float, scaling: Optional[dict] = None, positions: int = 0,
                        block_size: int = 0, device=None) -> "tuple[torch.Tensor, float]":
    """RoPE's per-pair frequencies (n_elem / 2,) in float32, and the factor cos/sin are multiplied by.

    scaling stretches them for longer contexts: "linear" divides all by `factor`; "llama3" (3.1+) divides the
    low frequencies (wavelengths above original_context / low_freq_factor) by `factor`, keeps the high ones (below
    original_context / high_freq_factor) and blends in between; "longrope" (Phi-3) divides each frequency by its own
    factor, the short list while `positions` fit in the original context and the long one beyond, and scales
    cos/sin by sqrt(1 + ln(factor) / ln(original_context)) with factor = block_size / original context."""
    inv_freq = 1.0 / (base ** (torch.arange(0, n_elem, 2, device=device, dtype=torch.float32) / n_elem))
    kind = (scaling or {}).get("rope_type")
    if kind is None:
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / scaling["factor"], 1.0
    original = scaling["original_max_position_embeddings"]
    if kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        wavelen = 2 * math.pi / inv_freq
        smooth = (original / wavelen - low) / (high - low)  # 0 at the low-frequency edge, 1 at the high one
        blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        scaled = torch.where(wavelen > original / low, inv_freq / factor, blended)
        return torch.where(wavelen < original / high, inv_freq, scaled), 1.0
    assert kind == "longrope", kind
    factors = scaling["long_factor"] if positions > original else scaling["short_factor"]
    inv_freq = inv_freq / torch.tensor(factors, device=device, dtype=torch.float32)
    factor = scaling.get("factor") or block_size / original
    attention = scaling.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    return inv_freq, attention


def rope_cos_sin(pos: torch.Tensor, config: Config, dtype: torch.dtype, local: bool = False):
    """cos/sin tables (T, rope_n_elem) for positions `pos`, computed in float32 then cast (as the HF models do).
    local: the windowed layers' tables (Gemma 3: their own base, no scaling)."""
    if pos.ndim == 2 and pos.shape[0] > 1 and not local and (config.rope_scaling or {}).get("rope_type") == "longrope":
        # per-row positions: each row switches to longrope's long factors at its own length, as it would alone
        rows = [rope_cos_sin(row[None], config, dtype) for row in pos]
        return torch.cat([cos for cos, _ in rows]), torch.cat([sin for _, sin in rows])
    if local:
        inv_freq, attention = inverse_frequencies(config.rope_n_elem, config.rope_local_base, device=pos.device)
    else:
        inv_freq, attention = inverse_frequencies(config.rope_n_elem, config.rope_base, config.rope_scaling,
                                                  int(pos.max()) + 1, config.block_size, pos.device)
    freqs = pos.float()[..., None] * inv_freq  # (T, n_elem / 2), or (B, T, ...) for per-row positions
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = (emb.cos() * attention).to(dtype), (emb.sin() * attention).to(dtype)
    if pos.ndim == 2:  # (B, 1, T, n_elem): broadcast over the heads of (B, n_head, T, hs)
        cos, sin = cos[:, None], sin[:, None]
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_elem: int) -> torch.Tensor:
    """Rotates the first n_elem dims of each head ("rotate half" layout); the rest pass through (partial rotary)."""
    if n_elem == 0:
        return x
    x_rope, x_pass = x[..., :n_elem], x[..., n_elem:]
    x1, x2 = x_rope[..., : n_elem // 2], x_rope[..., n_elem // 2:]
    rotated = torch.cat((-x2, x1), dim=-1)
    x_rope = x_rope * cos + rotated * sin
    return torch.cat((x_rope, x_pass), dim=-1) if x_pass.shape[-1] else x_rope
