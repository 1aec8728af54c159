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
                         softcap: Optional[float] = None) -> torch.Tensor:
    """sum_i cross_entropy(head(x_i), targets_i) for x (N, n_embd), targets (N,), in float32 (float64 for a float64
    model), computed in chunks of rows. softcap: the logits are cap * tanh(logits / cap) first (Gemma 2). For a plain nn.Linear head the gradients of x, weight and bias are computed
    chunk by chunk in the forward (softmax - one-hot, then the two matmuls) and only scaled in the backward: the same
    FLOPs as logits + cross-entropy, but the (N, vocab) logits, their log-softmax and its gradient are never held in
    memory. Other heads (LoRA on the head, quantized layers) take the plain path."""
    if type(head) is not nn.Linear or not head.weight.is_floating_point():
        logits = head(x).float()
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        return F.cross_entropy(logits, targets, reduction="sum")
    return _LinearCrossEntropy.apply(x, head.weight, head.bias, targets, torch.is_grad_enabled(), softcap)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, targets, grad_enabled, softcap):
        need_x, need_w, need_b = (grad_enabled and need for need in ctx.needs_input_grad[:3])
        rows = max(1, LOGITS_CHUNK_ELEMENTS // weight.shape[0])
        acc = torch.promote_types(x.dtype, torch.float32)  # float32, or float64 for a float64 model
        loss = torch.zeros((), device=x.device, dtype=acc)
        grad_x = torch.empty_like(x) if need_x else None
        # weight gradients are summed over chunks in float32, rounded to the weight's dtype once in the backward
        grad_w = torch.zeros(weight.shape, device=x.device, dtype=acc) if need_w else None
        grad_b = torch.zeros(bias.shape, device=x.device, dtype=acc) if need_b else None
        for start in range(0, x.shape[0], rows):
            x_chunk, t_chunk = x[start: start + rows], targets[start: start + rows]
            logits = F.linear(x_chunk, weight, bias).to(acc)
            if softcap is not None:
                tanh = torch.tanh(logits / softcap)
                logits = softcap * tanh
            lse = torch.logsumexp(logits, dim=-1)
            loss += (lse - logits.gather(1, t_chunk[:, None]).squeeze(1)).sum()
            if not (need_x or need_w or need_b):
                continue
            grad_logits = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            grad_logits[torch.arange(t_chunk.numel(), device=x.device), t_chunk] -= 1.0
            if softcap is not None:  # through cap * tanh(z / cap): d/dz = 1 - tanh^2
                grad_logits *= 1.0 - tanh.square()
            grad_logits = grad_logits.to(x.dtype)  # what the plain path's backward through .float() gives
            if need_x:
                torch.mm(grad_logits, weight, out=grad_x[start: start + rows])
            if need_w:
                if grad_logits.dtype == acc:
                    grad_w.addmm_(grad_logits.t(), x_chunk)
                else:
                    grad_w += grad_logits.t() @ x_chunk
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
