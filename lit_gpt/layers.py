"""The transformer block's elementwise layers: RMSNorm and the MLPs (SwiGLU, GeGLU, GELU).

In training, RMSNorm and the gated MLP's activation keep less for the backward pass than autograd would. Autograd
saves every intermediate its backward formulas name: RMSNorm's float32 copy of its input (twice the size of a bf16
input) and the gated product's activation act(a) beside a and b. Both are cheap to recompute, so here each is an
autograd Function that saves only its inputs (and RMSNorm's per-row scale) and recomputes the rest in backward. In a
SmolLM2-135M LoRA step of 4 x 512 tokens a block's saved activations fall from ~43 to ~33 MB
(scripts/dev/benchmark.py --compare_autograd_layers times it and reports peak memory). The forward math is the same operations as before; the gated product's gradients are bit for
bit autograd's (the same operations on the same values), RMSNorm's the same formula in float32 (tests/test_layers.py).
Without gradients (generation) and inside torch.compile (whose own partitioner chooses what to save), the plain
math runs.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_gpt.config import Config


def _saves_for_backward(*tensors: torch.Tensor) -> bool:
    """Whether a Function with a lean backward should run: gradients are wanted and we are not being compiled."""
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
            and not torch.compiler.is_compiling())


# ---- the gated product act(a) * b of SwiGLU (silu) and GeGLU (gelu, tanh approximation) ------------------------------
def activation(a: torch.Tensor, gelu: bool) -> torch.Tensor:
    return F.gelu(a, approximate="tanh") if gelu else F.silu(a)


class GatedProduct(torch.autograd.Function):
    """act(a) * b, saving a and b only: backward recomputes act(a) (one elementwise pass) instead of keeping it."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, gelu: bool) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.gelu = gelu
        return activation(a, gelu) * b

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        # what autograd runs for act(a) * b: d/db = grad * act(a); d/da = act'(a) * (grad * b)
        grad_b = grad * activation(a, ctx.gelu) if ctx.needs_input_grad[1] else None
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_act = grad * b
            grad_a = (torch.ops.aten.gelu_backward(grad_act, a, approximate="tanh") if ctx.gelu
                      else torch.ops.aten.silu_backward(grad_act, a))
        return grad_a, grad_b, None


def gated_product(a: torch.Tensor, b: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """act(a) * b: silu (SwiGLU) or the tanh approximation of gelu (GeGLU)."""
    if _saves_for_backward(a, b):
        return GatedProduct.apply(a, b, gelu)
    return activation(a, gelu) * b


class LLaMAMLP(nn.Module):
    """SwiGLU: proj(silu(fc_1(x)) * fc_2(x)); fc_1 is HF's gate_proj, fc_2 its up_proj."""
    gelu = False

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.fc_1 = nn.Linear(config.n_embd, config.intermediate_size, bias=config.bias)
        self.fc_2 = nn.Linear(config.n_embd, config.intermediate_size, bias=config.bias)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.proj(gated_product(self.fc_1(x), self.fc_2(x), self.gelu))


class GemmaMLP(LLaMAMLP):
    """GeGLU: proj(gelu_tanh(fc_1(x)) * fc_2(x)), Gemma's gated MLP."""
    gelu = True


class GptNeoxMLP(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.intermediate_size, bias=config.bias)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approximate

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


# ---- RMSNorm ------------------------------------------------------------------------------------------------------------
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, unit_offset: bool) -> torch.Tensor:
    """x / rms(x), computed in float32, times the weight. Llama casts back to x's dtype before the weight; Gemma
    (unit_offset) scales by 1 + weight in float32 and casts after."""
    return _scaled(x, _normalized(x, eps)[0], weight, unit_offset)


def _normalized(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / rms(x) in float32, 1 / rms(x) of each row as (..., 1) in float32)."""
    x = x.float()
    scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * scale, scale


def _scaled(x: torch.Tensor, normed: torch.Tensor, weight: torch.Tensor, unit_offset: bool) -> torch.Tensor:
    if unit_offset:
        return (normed * (1.0 + weight.float())).to(x.dtype)
    return weight * normed.to(x.dtype)


class RMSNormFunction(torch.autograd.Function):
    """rms_norm, saving x in its own dtype and one float32 scale per row instead of x's float32 copy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float, unit_offset: bool) -> torch.Tensor:
        normed, scale = _normalized(x, eps)
        ctx.save_for_backward(x, weight, scale)
        ctx.unit_offset = unit_offset
        return _scaled(x, normed, weight, unit_offset)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, scale = ctx.saved_tensors
        normed = x.float() * scale  # x̂, recomputed
        grad = grad.float() if ctx.unit_offset else grad  # Gemma: y = (x̂ (1 + w)).to(dtype); Llama: y = w x̂.to(dtype)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_normed = grad * (1.0 + weight.float()) if ctx.unit_offset else (grad * weight).float()
            # x̂ = x s with s = (mean(x²) + eps)^-1/2, so dx = s (dx̂ - x̂ mean(dx̂ x̂)) over the last dimension
            grad_x = (scale * (grad_normed - normed * (grad_normed * normed).mean(-1, keepdim=True))).to(x.dtype)
        if ctx.needs_input_grad[1]:  # summed over every row the weight scaled
            product = grad * normed if ctx.unit_offset else grad * normed.to(x.dtype)
            grad_weight = product.reshape(-1, weight.shape[-1]).sum(0).to(weight.dtype)
        return grad_x, grad_weight, None, None


class RMSNorm(nn.Module):
    """RMSNorm with float32 statistics; Gemma's (unit_offset) scales by 1 + weight, its weights starting at 0."""

    def __init__(self, size: int, eps: float, unit_offset: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size) if unit_offset else torch.ones(size))
        self.eps, self.unit_offset = eps, unit_offset

    def forward(self, x):
        if _saves_for_backward(x, self.weight):
            return RMSNormFunction.apply(x, self.weight, self.eps, self.unit_offset)
        return rms_norm(x, self.weight, self.eps, self.unit_offset)


def make_norm(config: Config) -> nn.Module:
    if config.norm_class_name == "RMSNorm":
        return RMSNorm(config.n_embd, config.norm_eps, config.norm_unit_offset)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps)
