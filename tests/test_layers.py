"""lit_gpt/layers.py: RMSNorm and the gated MLP product keep less for backward, with autograd's gradients.

The gated product's gradients are autograd's bit for bit (bf16 too) and it saves a and b only; RMSNorm's gradients
equal autograd's through the plain math to float32 rounding (both variants, per-head norms included) and it saves
its input in its own dtype, not a float32 copy. Without gradients the plain math runs."""

import pytest
import torch

from lit_gpt.config import Config
from lit_gpt.layers import GatedProduct, LLaMAMLP, RMSNorm, RMSNormFunction, activation, gated_product, rms_norm


def saved_bytes(fn, *inputs) -> tuple[torch.Tensor, int]:
    """fn(*inputs) and the bytes of the distinct storages autograd keeps for its backward (inputs included, leaf
    parameters excluded)."""
    storages = {}

    def pack(t):
        if not (t.is_leaf and t.requires_grad):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    return out, sum(storages.values())


def graph_nodes(out: torch.Tensor) -> set:
    """The names of the backward nodes behind `out`."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(next_node for next_node, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gated_product_gradients_are_autograds_bit_for_bit(gelu, dtype):
    torch.manual_seed(0)
    a, b = (torch.randn(3, 5, 64, dtype=dtype) * 3 for _ in range(2))
    grad = torch.randn(3, 5, 64, dtype=dtype)
    ours_a, ours_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    plain_a, plain_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    ours = GatedProduct.apply(ours_a, ours_b, gelu)
    plain = activation(plain_a, gelu) * plain_b
    ours.backward(grad)
    plain.backward(grad)
    assert torch.equal(ours, plain)
    assert torch.equal(ours_a.grad, plain_a.grad) and torch.equal(ours_b.grad, plain_b.grad)


def test_gated_product_saves_its_inputs_only():
    a, b = (torch.randn(4, 32, 96, dtype=torch.bfloat16).requires_grad_() for _ in range(2))
    a2, b2 = a * 1, b * 1  # not leaves: as in a model, where a and b come out of linear layers
    _, ours = saved_bytes(lambda x, y: GatedProduct.apply(x, y, False), a2, b2)
    _, plain = saved_bytes(lambda x, y: activation(x, False) * y, a2, b2)
    size = a2.numel() * a2.element_size()
    assert ours == 2 * size  # a and b
    assert plain == 3 * size  # a, b and silu(a)


@pytest.mark.parametrize("unit_offset", [False, True])
@pytest.mark.parametrize("shape", [(3, 7, 48), (2, 5, 4, 16)])  # a block's norm; per-head q/k norms (Qwen3, Gemma 3)
def test_rms_norm_gradients_equal_autograds_in_float32(unit_offset, shape):
    """The statistics are float32 whatever the input (as in Llama's and Gemma's references): equal to its rounding."""
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=torch.float64) * 2 + 0.5
    weight = torch.randn(shape[-1], dtype=torch.float64) * 0.3 + (0.0 if unit_offset else 1.0)
    grad = torch.randn(*shape, dtype=torch.float64)
    results = []
    for norm in (lambda x, w: RMSNormFunction.apply(x, w, 1e-6, unit_offset),
                 lambda x, w: rms_norm(x, w, 1e-6, unit_offset)):
        xi, wi = x.clone().requires_grad_(), weight.clone().requires_grad_()
        out = norm(xi, wi)
        out.backward(grad)
        results.append((out, xi.grad, wi.grad))
    for ours, plain in zip(*results):
        torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unit_offset", [False, True])
def test_rms_norm_in_bf16_is_as_close_to_float64_as_autograd(unit_offset):
    """In bf16 the two backward passes round differently: ours is no further from the float64 gradient."""
    torch.manual_seed(2)
    x = torch.randn(6, 9, 64) * 2
    weight = torch.randn(64) * 0.3 + (0.0 if unit_offset else 1.0)
    grad = torch.randn(6, 9, 64)

    def grads(norm, dtype):
        xi, wi = x.to(dtype).requires_grad_(), weight.to(dtype).requires_grad_()
        norm(xi, wi, 1e-6, unit_offset).backward(grad.to(dtype))
        return xi.grad.double(), wi.grad.double()

    exact = grads(rms_norm, torch.float64)
    ours, plain = grads(RMSNormFunction.apply, torch.bfloat16), grads(rms_norm, torch.bfloat16)
    for e, o, p in zip(exact, ours, plain):
        assert (o - e).norm() <= 1.5 * (p - e).norm() + 1e-6
        assert (o - e).norm() <= 0.02 * e.norm()


def test_rms_norm_saves_its_input_in_its_own_dtype():
    norm = RMSNorm(96, 1e-5).to(torch.bfloat16)
    x = (torch.randn(4, 32, 96, dtype=torch.bfloat16).requires_grad_()) * 1
    _, ours = saved_bytes(norm, x)
    _, plain = saved_bytes(lambda t: rms_norm(t, norm.weight, norm.eps, False), x)
    size = x.numel() * x.element_size()
    assert ours == size + 4 * 32 * 4  # x in bf16 and one float32 scale per row
    assert plain >= 2 * size  # x's float32 copy


def test_without_gradients_the_plain_math_runs():
    mlp = LLaMAMLP(Config(n_embd=16, intermediate_size=40, n_head=2, n_layer=1, vocab_size=8, block_size=8))
    norm = RMSNorm(16, 1e-5)
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        assert norm(x).grad_fn is None
        assert torch.equal(norm(x), rms_norm(x, norm.weight, 1e-5, False))
    assert type(norm(x).grad_fn).__name__ == "RMSNormFunctionBackward"
    assert "GatedProductBackward" in graph_nodes(mlp(x))
    with torch.no_grad():
        assert torch.equal(mlp(x), mlp.proj(torch.nn.functional.silu(mlp.fc_1(x)) * mlp.fc_2(x)))
    assert torch.equal(gated_product(x, x).detach(), torch.nn.functional.silu(x) * x)
