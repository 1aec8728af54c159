"""lit_gpt/lora.py: LoRA layers, targets, saving, and what a LoRA training step computes.

The layer computes W x + b + (alpha/r) B A x (merged into its weight or not), q/k/v under grouped-query attention match
per-projection math done by hand, a tied head stays tied, only LoRA tensors train and get saved; a LoRA step never
computes a frozen weight's gradient or W + BA. Merging whole models: test_lora_merge.py."""

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import make_model, masked_head_loss, randomize_lora, tiny_config
from lit_gpt.lora import LoRAConfig, LoRALinear, load_lora_weights, lora_state_dict, mark_only_lora_as_trainable
from lit_gpt.model import GPT
from lit_gpt.train.args import lora_config_from_flags
from lit_gpt.utils import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny training steps: see conftest.one_thread


def test_lora_linear_is_w_x_plus_scaled_b_a_x():
    torch.manual_seed(0)
    base = nn.Linear(6, 5, bias=True)
    layer = LoRALinear(base, r=3, alpha=6.0, dropout=0.0)
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(layer(x), base(x))  # B = 0: starts exactly at the base layer
    layer.lora_B.data = torch.randn(5, 3)
    A, B, W, b = layer.lora_A, layer.lora_B, base.weight, base.bias
    expected = x @ W.T + b + (6.0 / 3) * (x @ A.T @ B.T)
    torch.testing.assert_close(layer(x), expected)
    W_before = W.detach().clone()
    layer.merge()
    torch.testing.assert_close(base.weight, W_before + 2.0 * B @ A)
    torch.testing.assert_close(layer(x), expected)
    layer.unmerge()
    torch.testing.assert_close(base.weight, W_before)
    torch.testing.assert_close(layer(x), expected)


def test_lora_dropout_only_on_the_lora_path():
    torch.manual_seed(0)
    base = nn.Linear(8, 8, bias=False)
    layer = LoRALinear(base, r=2, alpha=2.0, dropout=0.5).train()
    x = torch.randn(3, 8)
    torch.testing.assert_close(layer(x), base(x))  # B = 0: dropout cannot leak into the base path
    layer.lora_B.data.fill_(1.0)
    assert not torch.allclose(layer(x), layer(x))  # random masks in training
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_qkv_lora_under_gqa_matches_per_projection_math():
    config = tiny_config(n_head=4, n_query_groups=2)  # 2 query heads share each key/value head
    torch.manual_seed(0)
    model = GPT(config)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    lora = LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "key", "value")).apply(model)
    assert lora.targets == ("query", "key", "value") and lora.scaling == 2.0
    randomize_lora(model)
    attn = model.blocks[1].attn
    assert attn.q.lora_B.shape == (config.n_head * config.head_size, 4)
    assert attn.k.lora_B.shape == attn.v.lora_B.shape == (config.n_query_groups * config.head_size, 4)

    # each projection's output, seen on its actual input, is W x + b + 2 B A x
    seen = {}
    hooks = [getattr(attn, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0], o)))
             for n in ("q", "k", "v")]
    idx = torch.randint(0, config.vocab_size, (2, 9))
    out = model(idx)
    for h in hooks:
        h.remove()
    for n in ("q", "k", "v"):
        x, y = seen[n]
        layer = getattr(attn, n)
        W, b = base[f"blocks.1.attn.{n}.weight"], base.get(f"blocks.1.attn.{n}.bias")
        expected = x @ W.T + (0 if b is None else b) + 2.0 * (x @ layer.lora_A.T) @ layer.lora_B.T
        torch.testing.assert_close(y, expected)

    # and the whole model equals a plain GPT whose q/k/v weights carry the updates, built by hand
    by_hand = dict(base)
    for i, block in enumerate(model.blocks):
        for n in ("q", "k", "v"):
            layer = getattr(block.attn, n)
            by_hand[f"blocks.{i}.attn.{n}.weight"] = base[f"blocks.{i}.attn.{n}.weight"] + 2.0 * layer.lora_B @ layer.lora_A
    plain = GPT(config)
    plain.load_state_dict(by_hand)
    torch.testing.assert_close(plain(idx), out, atol=1e-5, rtol=1e-5)


def test_only_lora_trains_and_is_saved_tied_head_stays_tied():
    config = tiny_config(tie_embeddings=True)
    model = GPT(config)
    LoRAConfig(r=2, alpha=4, dropout=0.0, targets=("query", "value", "head")).apply(model)
    assert model.lm_head.linear.weight is model.wte.weight  # LoRA on the head did not untie it
    mark_only_lora_as_trainable(model)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert "lm_head.lora_A" in trainable and "blocks.0.attn.q.lora_B" in trainable and "blocks.0.attn.k.lora_A" not in trainable
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randint(0, config.vocab_size, (2, 5))).sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    optimizer.step()
    for n, p in model.named_parameters():
        if n in frozen:
            torch.testing.assert_close(p, frozen[n])

    saved = lora_state_dict(model)
    assert sorted(saved) == trainable
    fresh = GPT(config)
    LoRAConfig(r=2, alpha=4, dropout=0.0, targets=("query", "value", "head")).apply(fresh)
    load_lora_weights(fresh, saved)
    torch.testing.assert_close(fresh.lm_head.lora_B, model.lm_head.lora_B)
    with pytest.raises(UserError, match="missing"):
        load_lora_weights(fresh, {k: v for k, v in saved.items() if "lm_head" not in k})


def test_lora_config_roundtrip_and_errors(tmp_path):
    config = lora_config_from_flags({"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_value": False,
                                     "lora_mlp": True})
    assert config.targets == ("query", "mlp")
    path = config.save(tmp_path)
    assert path.name == "lora_config.json"
    assert LoRAConfig.from_file(tmp_path) == config
    (tmp_path / "bad.json").write_text("{\"r\": 4}")
    with pytest.raises(UserError, match="bad.json"):
        LoRAConfig.from_file(tmp_path / "bad.json")
    with pytest.raises(UserError, match="at least one target"):
        lora_config_from_flags({"lora_query": False, "lora_value": False})
    with pytest.raises(UserError, match="unknown LoRA targets"):
        LoRAConfig(targets=("queries",))
    model = GPT(tiny_config())
    LoRAConfig(r=8, alpha=16, dropout=0.0, targets=("query", "value")).apply(model)
    with pytest.raises(ValueError, match="already"):
        LoRAConfig(r=8, alpha=16, dropout=0.0, targets=("query", "value")).apply(model)


# ---- a LoRA step never computes a frozen weight's gradient or W + BA -------------------------------------------------
class RecordAllocations(TorchDispatchMode):
    """Records (op, shape) of every freshly allocated tensor output (views of existing storage are left out)."""

    def __init__(self, existing_storages):
        super().__init__()
        self.existing = existing_storages
        self.outputs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.existing:
                self.outputs.append((str(func), tuple(t.shape)))
        return out


def test_lora_frozen_weights_get_no_gradient_and_no_merged_weight():
    """In a LoRA training step no tensor shaped like a frozen weight is ever computed: no weight gradient for
    frozen weights (autograd skips them) and no W + BA materialized in the forward."""
    model = make_model(lora=True)
    model.train()
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(p.grad is None for p in frozen.values())
    weight_shapes = {tuple(p.shape) for p in frozen.values() if p.ndim == 2}
    # B*T = 26, T = 13 and the 14 target positions differ from every weight dimension (16, 32, 64, 256), so no
    # activation or activation gradient has a weight's shape
    B, T = 2, 13
    input_ids = torch.randint(0, 256, (B, T))
    targets = torch.randint(0, 256, (B, T))
    targets[:, :6] = -100
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with RecordAllocations(storages) as recorder:
        loss = masked_head_loss(model, input_ids, targets)
        loss.backward()
    weight_like = [(op, shape) for op, shape in recorder.outputs if shape in weight_shapes]
    assert not weight_like, f"weight-shaped tensors computed in a LoRA step: {weight_like[:5]}"
    assert all(p.grad is None for p in frozen.values())
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    assert len(recorder.outputs) > 50  # the recorder did see the step


def test_lora_recorder_detects_full_weight_gradients():
    """The check above can fail: with full fine-tuning the weight gradients are weight-shaped tensors."""
    model = make_model(lora=False)
    weight_shapes = {tuple(p.shape) for p in model.parameters() if p.ndim == 2}
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    input_ids = torch.randint(0, 256, (2, 13))
    with RecordAllocations(storages) as recorder:
        masked_head_loss(model, input_ids, input_ids).backward()
    assert any(shape in weight_shapes for _, shape in recorder.outputs)


# ---- variants: rsLoRA's scaling, DoRA's magnitude and direction ------------------------------------------------------
def test_rslora_scales_the_update_by_alpha_over_sqrt_r():
    torch.manual_seed(0)
    base = nn.Linear(6, 5, bias=True)
    layer = LoRALinear(base, r=4, alpha=6.0, variant="rslora")
    layer.lora_B.data = torch.randn(5, 4)
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), base(x) + 3.0 * (x @ layer.lora_A.T @ layer.lora_B.T))  # 6 / sqrt(4)
    assert LoRAConfig(r=4, alpha=6.0, variant="rslora").scaling == 3.0 and LoRAConfig(r=4, alpha=6.0).scaling == 1.5


def dora_by_hand(layer: LoRALinear, detach_norm: bool = True) -> torch.Tensor:
    """m / ||W + s B A|| (W + s B A), row by row, as the DoRA paper writes it (W^T's columns are W's rows)."""
    combined = layer.linear.weight + layer.scaling * layer.lora_B @ layer.lora_A
    norm = combined.norm(dim=1, keepdim=True)
    return layer.lora_magnitude.view(-1, 1) * combined / (norm.detach() if detach_norm else norm)


def test_dora_is_magnitude_times_normalized_direction_and_merges_exactly():
    torch.manual_seed(0)
    base = nn.Linear(6, 5, bias=True)
    layer = LoRALinear(base, r=3, alpha=6.0, variant="dora")
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(layer.lora_magnitude.detach(), base.weight.detach().norm(dim=1))  # m starts at ||W||
    torch.testing.assert_close(layer(x), base(x))  # B = 0 and m = ||W||: exactly the base layer
    layer.lora_B.data = torch.randn(5, 3)
    layer.lora_magnitude.data = layer.lora_magnitude.data * torch.tensor([0.5, 1.0, 1.5, 2.0, 0.8])
    expected = x @ dora_by_hand(layer).T + base.bias
    torch.testing.assert_close(layer(x), expected)
    W_before, merged = base.weight, dora_by_hand(layer).detach()
    layer.merge()
    torch.testing.assert_close(base.weight, merged)
    torch.testing.assert_close(layer(x), expected)
    layer.unmerge()
    assert base.weight is W_before  # the original weight comes back, not W recomputed from the merged one
    torch.testing.assert_close(layer(x), expected)


def test_dora_gradients_treat_the_norm_as_a_constant():
    """DoRA's section 4.3 (and PEFT): ||W + s B A|| is detached, so B, A and m get the gradients of the weight
    m / c (W + s B A) with c a constant."""
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(6, 5, bias=False), r=3, alpha=6.0, variant="dora")
    layer.linear.weight.requires_grad_(False)
    layer.lora_B.data = torch.randn(5, 3)
    x = torch.randn(4, 6)
    grads = {}
    for name, loss in (("layer", lambda: layer(x).pow(2).sum()),
                       ("detached", lambda: (x @ dora_by_hand(layer).T).pow(2).sum()),
                       ("not detached", lambda: (x @ dora_by_hand(layer, detach_norm=False).T).pow(2).sum())):
        params = (layer.lora_A, layer.lora_B, layer.lora_magnitude)
        grads[name] = torch.autograd.grad(loss(), params)
    for ours, expected in zip(grads["layer"], grads["detached"]):
        torch.testing.assert_close(ours, expected)
    assert not torch.allclose(grads["layer"][1], grads["not detached"][1])  # the detach is what makes them equal


def test_lora_variant_is_saved_with_the_config_and_old_configs_are_plain_lora(tmp_path):
    config = lora_config_from_flags({"lora_r": 4, "lora_alpha": 8, "lora_variant": "dora"})
    assert config.variant == "dora"
    config.save(tmp_path)
    assert LoRAConfig.from_file(tmp_path) == config
    (tmp_path / "old.json").write_text('{"r": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value"]}')
    assert LoRAConfig.from_file(tmp_path / "old.json").variant == "lora"
    with pytest.raises(UserError, match="--lora_variant 'qlora': choose from lora .*; rslora .*; dora"):
        LoRAConfig(variant="qlora")


def test_dora_saves_and_loads_its_magnitudes_and_trains_them():
    config = tiny_config()
    model = GPT(config)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    LoRAConfig(r=2, alpha=4, dropout=0.0, variant="dora").apply(model)
    mark_only_lora_as_trainable(model)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert "blocks.0.attn.q.lora_magnitude" in trainable and sorted(lora_state_dict(model)) == trainable
    assert model.blocks[0].attn.q.lora_magnitude.shape == (config.n_head * config.head_size,)
    randomize_lora(model)
    fresh = GPT(config)
    fresh.load_state_dict(base)
    LoRAConfig(r=2, alpha=4, dropout=0.0, variant="dora").apply(fresh)
    load_lora_weights(fresh, lora_state_dict(model))
    idx = torch.randint(0, config.vocab_size, (2, 5))
    torch.testing.assert_close(fresh(idx), model(idx))
    plain = GPT(config)
    LoRAConfig(r=2, alpha=4, dropout=0.0).apply(plain)
    with pytest.raises(UserError, match="unexpected"):  # DoRA weights under a plain LoRA config
        load_lora_weights(plain, lora_state_dict(model))
