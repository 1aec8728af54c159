"""The LM head and cross-entropy fused: the summed loss over the trained positions without ever holding the
(N, vocab) logits. With a 50k-262k vocabulary the logits of a batch are the largest tensor of a training step;
here they exist one chunk of rows at a time (LOGITS_CHUNK_ELEMENTS), and the gradients are computed chunk by chunk
in the forward. `GPT.forward(idx, targets=...)` calls it.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


LOGITS_CHUNK_ELEMENTS = 1 << 24  # rows of logits per chunk x vocab: 64 MB in float32


def linear_cross_entropy(x: torch.Tensor, head: nn.Module, targets: torch.Tensor,
                         softcap: Optional[float] = None, reduction: str = "sum") -> torch.Tensor:
    """sum_i cross_entropy(head(x_i), targets_i) for x (N, n_embd), targets (N,), in float32 (float64 for a float64
    model), computed in chunks of rows; reduction "none": each row's cross-entropy, (N,) (the negative
    log-probabilities of preference training, whose rows get different gradient weights). softcap: the logits are
    cap * tanh(logits / cap) first (Gemma 2). For a plain nn.Linear head the (N, vocab) logits, their log-softmax
    and its gradient are never held in memory: the gradients are computed chunk by chunk in the forward (softmax -
    one-hot, then the matmuls) and only scaled in the backward, with the same FLOPs as logits + cross-entropy
    ("none" keeps each row's input gradient, (N, n_embd), and recomputes the chunks in the backward for a trained
    head). Other heads (LoRA on the head, quantized layers) take the plain path."""
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")
    if type(head) is not nn.Linear or not head.weight.is_floating_point():
        logits = head(x).float()
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        return F.cross_entropy(logits, targets, reduction=reduction)
    fused = _LinearCrossEntropy if reduction == "sum" else _LinearTokenCrossEntropy
    return fused.apply(x, head.weight, head.bias, targets, torch.is_grad_enabled(), softcap)


def _chunks(x: torch.Tensor, weight: torch.Tensor, bias, softcap: Optional[float]):
    """Yields (rows, logits in float32 at least, their logsumexp, tanh of the capped logits or None), one chunk of
    LOGITS_CHUNK_ELEMENTS logits at a time."""
    rows = max(1, LOGITS_CHUNK_ELEMENTS // weight.shape[0])
    acc = torch.promote_types(x.dtype, torch.float32)  # float32, or float64 for a float64 model
    for start in range(0, x.shape[0], rows):
        logits, tanh = F.linear(x[start: start + rows], weight, bias).to(acc), None
        if softcap is not None:
            tanh = torch.tanh(logits / softcap)
            logits = softcap * tanh
        yield slice(start, start + rows), logits, torch.logsumexp(logits, dim=-1), tanh


def _logits_grad(logits: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor, tanh) -> torch.Tensor:
    """d cross_entropy / d (the logits before the cap) of each row: softmax - one-hot, through cap * tanh(z / cap)
    (d/dz = 1 - tanh^2). Overwrites `logits`."""
    grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
    grad[torch.arange(targets.numel(), device=grad.device), targets] -= 1.0
    return grad if tanh is None else grad.mul_(1.0 - tanh.square())


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, targets, grad_enabled, softcap):
        need_x, need_w, need_b = (grad_enabled and need for need in ctx.needs_input_grad[:3])
        acc = torch.promote_types(x.dtype, torch.float32)
        loss = torch.zeros((), device=x.device, dtype=acc)
        grad_x = torch.empty_like(x) if need_x else None
        # weight gradients are summed over chunks in float32, rounded to the weight's dtype once in the backward
        grad_w = torch.zeros(weight.shape, device=x.device, dtype=acc) if need_w else None
        grad_b = torch.zeros(bias.shape, device=x.device, dtype=acc) if need_b else None
        for rows, logits, lse, tanh in _chunks(x, weight, bias, softcap):
            loss += (lse - logits.gather(1, targets[rows, None]).squeeze(1)).sum()
            if not (need_x or need_w or need_b):
                continue
            # rounded to x's dtype: what the plain path's backward through .float() gives
            grad_logits = _logits_grad(logits, lse, targets[rows], tanh).to(x.dtype)
            if need_x:
                torch.mm(grad_logits, weight, out=grad_x[rows])
            if need_w:
                if grad_logits.dtype == acc:
                    grad_w.addmm_(grad_logits.t(), x[rows])
                else:
                    grad_w += grad_logits.t() @ x[rows]
            if need_b:
                grad_b += grad_logits.to(acc).sum(0)
        ctx.save_for_backward(grad_x, grad_w, grad_b)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        # scaled in float32 and rounded once, as the plain path's backward does
        grads = [None if g is None else (g.to(grad_loss.dtype) * grad_loss).to(dtype)
                 for g, dtype in zip(ctx.saved_tensors, ctx.dtypes)]
        return *grads, None, None, None


class _LinearTokenCrossEntropy(torch.autograd.Function):
    """Each row's cross-entropy. Row i's loss depends on x_i alone, so its input gradient (N, n_embd) is computed
    in the forward and scaled by the row's upstream gradient in the backward; the head's own gradients sum over rows
    with those weights, so for a trained head the backward recomputes the chunks."""

    @staticmethod
    def forward(ctx, x, weight, bias, targets, grad_enabled, softcap):
        need_x, need_w, need_b = (grad_enabled and need for need in ctx.needs_input_grad[:3])
        losses = torch.empty(x.shape[0], device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
        row_grad_x = torch.empty_like(x) if need_x else None
        for rows, logits, lse, tanh in _chunks(x, weight, bias, softcap):
            losses[rows] = lse - logits.gather(1, targets[rows, None]).squeeze(1)
            if need_x:
                torch.mm(_logits_grad(logits, lse, targets[rows], tanh).to(x.dtype), weight, out=row_grad_x[rows])
        ctx.save_for_backward(row_grad_x, *((x, weight, bias, targets) if need_w or need_b else ()))
        ctx.softcap, ctx.need = softcap, (need_w, need_b)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        row_grad_x, *inputs = ctx.saved_tensors
        grad_x = None if row_grad_x is None else (row_grad_x.to(grad_losses.dtype) * grad_losses[:, None]).to(
            row_grad_x.dtype)
        grad_w = grad_b = None
        if inputs:
            x, weight, bias, targets = inputs
            need_w, need_b = ctx.need
            grad_w = torch.zeros(weight.shape, device=x.device, dtype=grad_losses.dtype) if need_w else None
            grad_b = torch.zeros(bias.shape, device=x.device, dtype=grad_losses.dtype) if need_b else None
            for rows, logits, lse, tanh in _chunks(x, weight, bias, ctx.softcap):
                grad_logits = _logits_grad(logits, lse, targets[rows], tanh) * grad_losses[rows, None]
                if need_w:
                    grad_w += grad_logits.to(x.dtype).t().to(grad_w.dtype) @ x[rows].to(grad_w.dtype)
                if need_b:
                    grad_b += grad_logits.sum(0)
            grad_w = None if grad_w is None else grad_w.to(weight.dtype)
            grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_x, grad_w, grad_b, None, None, None
