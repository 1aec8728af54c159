"""No speed trick changes the maths: each optimization of the training step gives the same losses and gradients as
the plain computation it replaces (float64 where the comparison should be exact up to summation order).

Covered: the output-masked LM head vs full logits + masked cross-entropy; the fused, chunked head + loss
(`model(idx, targets=...)`, `linear_cross_entropy`) vs the same; length-grouped vs plain batching (padding never
changes an example's loss); gradient checkpointing on/off; torch.compile'd blocks on/off; the fused AdamW vs the per-tensor loop; LoRA's frozen base
weights (no weight gradient is ever computed, W + BA never materialized); the benchmark script's harness on a tiny
model.
"""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import tiny_config
import lit_gpt.fused_loss
from lit_gpt.lora import LoRAConfig, mark_only_lora_as_trainable
from lit_gpt.fused_loss import linear_cross_entropy
from lit_gpt.model import GPT
from lit_gpt.train.args import TrainArgs
from lit_gpt.train.dataset import TrainingSet, epoch_batches, split_batch
from lit_gpt.train.step import make_optimizer


def make_model(dtype=torch.float64, lora=False, seed=0, **overrides):
    """The same weights for every dtype: initialized in float64, then converted."""
    torch.manual_seed(seed)
    model = GPT(tiny_config(**overrides)).double()
    if lora:
        LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "value")).apply(model)
        mark_only_lora_as_trainable(model)
        for name, p in model.named_parameters():  # B starts at zero; make the update non-trivial
            if name.endswith("lora_B"):
                torch.nn.init.normal_(p, std=0.1)
    return model.to(dtype)


def random_examples(n, vocab_size=256, min_len=3, max_len=40, seed=0):
    """Prepared-data style examples: a masked prompt, then trained answer tokens."""
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        ids = torch.randint(0, vocab_size, (length,), generator=g)
        prompt = int(torch.randint(1, length - 1, (1,), generator=g))
        labels = ids.clone()
        labels[:prompt] = -100
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(a, b, rtol=1e-9, atol=1e-12):
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=name)


def at_least_float32(logits):
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def masked_head_loss(model, input_ids, targets):
    """What the training step computed before the fused loss: LM head only where there is a target, summed CE."""
    mask = targets != -100
    return F.cross_entropy(at_least_float32(model(input_ids, output_mask=mask)), targets[mask], reduction="sum")


def full_logits_loss(model, input_ids, targets):
    """The plain way: logits everywhere, cross-entropy ignoring -100."""
    logits = at_least_float32(model(input_ids))
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100,
                           reduction="sum")


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_output_mask_equals_full_logits(lora, tied):
    data = TrainingSet(random_examples(6), 64, "test", 256)
    input_ids, targets = data.collate(list(range(6)), torch.device("cpu"))
    model = make_model(lora=lora, tie_embeddings=tied)

    loss_masked = masked_head_loss(model, input_ids, targets)
    loss_masked.backward()
    grads_masked = grads(model)
    model.zero_grad(set_to_none=True)
    loss_full = full_logits_loss(model, input_ids, targets)
    loss_full.backward()

    torch.testing.assert_close(loss_masked, loss_full, rtol=1e-12, atol=1e-12)
    assert_same_grads(grads_masked, grads(model))


def test_output_mask_bf16_as_accurate_as_full_logits():
    """In bf16-true the masked head is as close to the float64 result as full logits + masked cross-entropy."""
    data = TrainingSet(random_examples(4), 64, "test", 256)
    input_ids, targets = data.collate(list(range(4)), torch.device("cpu"))
    errors = bf16_errors({"masked": masked_head_loss, "full": full_logits_loss}, input_ids, targets)
    for key, full_error in errors["full"].items():
        assert full_error < 0.05, key
        assert errors["masked"][key] <= 1.5 * full_error + 1e-3, (key, errors["masked"][key], full_error)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 3 rows of logits (vocab 256), so every fused computation spans several chunks."""
    monkeypatch.setattr(lit_gpt.fused_loss, "LOGITS_CHUNK_ELEMENTS", 3 * 256)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("head_bias", [False, True], ids=["nobias", "bias"])
def test_fused_head_loss_equals_full_logits(lora, tied, head_bias, small_chunks):
    data = TrainingSet(random_examples(6), 64, "test", 256)
    input_ids, targets = data.collate(list(range(6)), torch.device("cpu"))
    model = make_model(lora=lora, tie_embeddings=tied, lm_head_bias=head_bias)

    loss_fused = model(input_ids, targets=targets)
    (loss_fused * 0.37).backward()  # a non-unit upstream gradient, as the loop's 1 / n_targets scaling
    grads_fused = grads(model)
    model.zero_grad(set_to_none=True)
    loss_plain = full_logits_loss(model, input_ids, targets)
    (loss_plain * 0.37).backward()

    torch.testing.assert_close(loss_fused, loss_plain, rtol=1e-12, atol=1e-12)
    assert_same_grads(grads_fused, grads(model))
    with torch.no_grad():  # validation: the same loss, no gradient work
        torch.testing.assert_close(model(input_ids, targets=targets), loss_plain, rtol=1e-12, atol=1e-12)


def bf16_errors(loss_fns, input_ids, targets, **overrides):
    """Relative error (loss, and each gradient's by norm) of each loss function on the model in bf16-true against
    the same model in float64 with the plain full-logits loss."""
    reference = make_model(dtype=torch.float64, **overrides)
    ref_loss = full_logits_loss(reference, input_ids, targets)
    ref_loss.backward()
    ref_grads = grads(reference)
    errors = {}
    for name, fn in loss_fns.items():
        model = make_model(dtype=torch.bfloat16, **overrides)
        loss = fn(model, input_ids, targets)
        loss.backward()
        assert loss.dtype == torch.float32 and all(g.dtype == torch.bfloat16 for g in grads(model).values())
        errors[name] = {"loss": abs(loss.item() - ref_loss.item()) / abs(ref_loss.item())}
        for key, g in grads(model).items():
            errors[name][key] = float((g.double() - ref_grads[key]).norm() / ref_grads[key].norm())
    return errors


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fused_head_loss_bf16_as_accurate_as_plain(lora, small_chunks):
    """In bf16-true the fused head + loss is as close to the float64 result as the plain masked-head path is."""
    data = TrainingSet(random_examples(4), 64, "test", 256)
    input_ids, targets = data.collate(list(range(4)), torch.device("cpu"))
    errors = bf16_errors({"fused": lambda m, i, t: m(i, targets=t), "plain": masked_head_loss}, input_ids, targets,
                         tie_embeddings=True, lora=lora)
    for key, plain_error in errors["plain"].items():
        assert plain_error < 0.05, key  # bf16 itself is this close
        assert errors["fused"][key] <= 1.5 * plain_error + 1e-3, (key, errors["fused"][key], plain_error)


def test_fused_head_loss_without_targets_is_zero_with_zero_grads():
    """A micro-batch without any trained token (a rank's empty share) still runs a backward, with zero gradients."""
    model = make_model()
    loss = model(torch.zeros(1, 5, dtype=torch.long), targets=torch.full((1, 5), -100))
    loss.backward()
    assert loss.item() == 0.0
    assert all(float(g.abs().sum()) == 0.0 for g in grads(model).values())


class MaxAllocation(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_fused_head_never_holds_all_logits(small_chunks):
    """With targets, no tensor of (trained positions x vocab) elements exists in forward or backward; the plain
    path creates several."""
    model = make_model(dtype=torch.float32)
    input_ids = torch.randint(0, 256, (4, 20))
    with MaxAllocation() as fused:
        model(input_ids, targets=input_ids).backward()
    with MaxAllocation() as plain:
        masked_head_loss(model, input_ids, input_ids).backward()
    assert plain.largest >= 4 * 20 * 256
    # the largest left: the head weight (256 x 32), MLP activations (80 x 64), a chunk of logits (3 x 256)
    assert fused.largest <= 256 * 32


def test_linear_cross_entropy_plain_path_for_other_heads():
    """LoRA on the head (not a plain Linear) goes through the plain head + cross-entropy."""
    model = make_model()
    LoRAConfig(r=2, alpha=4, dropout=0.0, targets=("head",)).apply(model)
    x = torch.randn(7, 32, dtype=torch.float64)
    targets = torch.randint(0, 256, (7,))
    expected = F.cross_entropy(model.lm_head(x), targets, reduction="sum")
    torch.testing.assert_close(linear_cross_entropy(x, model.lm_head, targets).double(), expected)


def per_example_losses(model, data, micro_batches):
    """{example index: summed CE over its targets} computed inside the given (padded) micro-batches."""
    out = {}
    for indices in micro_batches:
        input_ids, targets = data.collate(indices, torch.device("cpu"))
        logits = model(input_ids)
        losses = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none").sum(1)
        out.update({i: losses[row] for row, i in enumerate(indices)})
    return out


def test_length_grouping_keeps_each_example_loss():
    """The loop's length-grouped batches and plain batches in data order give every example the same loss
    (right padding is invisible to causal attention), and the grouped plan is a permutation of the data."""
    data = TrainingSet(random_examples(40, max_len=30), 64, "test", 256)
    model = make_model().eval()
    batches = epoch_batches(data, epoch=0, seed=3, order="shuffle", batch_size=8)
    grouped = [mb for b in batches for mb in split_batch(b, 2)]
    assert sorted(i for mb in grouped for i in mb) == list(range(len(data)))
    plain = [list(range(s, min(s + 4, len(data)))) for s in range(0, len(data), 4)]
    alone = [[i] for i in range(len(data))]
    with torch.no_grad():
        losses_grouped = per_example_losses(model, data, grouped)
        losses_plain = per_example_losses(model, data, plain)
        losses_alone = per_example_losses(model, data, alone)
    for i in range(len(data)):
        torch.testing.assert_close(losses_grouped[i], losses_alone[i], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(losses_plain[i], losses_alone[i], rtol=1e-12, atol=1e-12)
    padded = lambda mbs: sum(len(mb) * max(data.lengths[i] for i in mb) for mb in mbs)  # noqa: E731
    assert padded(grouped) < padded(plain)  # and it does save padding


def test_length_grouping_keeps_the_batch_gradient():
    """Summed over a batch, the gradient does not depend on how its examples are grouped into micro-batches."""
    data = TrainingSet(random_examples(12, max_len=30, seed=1), 64, "test", 256)
    model = make_model(lora=True)
    by_length = sorted(range(12), key=data.lengths.__getitem__)
    results = []
    for micro_batches in ([list(range(0, 6)), list(range(6, 12))], [by_length[:6], by_length[6:]]):
        model.zero_grad(set_to_none=True)
        for indices in micro_batches:
            masked_head_loss(model, *data.collate(indices, torch.device("cpu"))).backward()
        results.append(grads(model))
    assert_same_grads(*results)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_same_loss_and_grads(lora):
    data = TrainingSet(random_examples(4), 64, "test", 256)
    input_ids, targets = data.collate(list(range(4)), torch.device("cpu"))
    results = []
    for checkpointing in (False, True):
        model = make_model(lora=lora, parallel_residual=lora)  # also the parallel-residual block layout
        model.gradient_checkpointing = checkpointing
        model.train()
        loss = masked_head_loss(model, input_ids, targets)
        loss.backward()
        results.append((loss.detach(), grads(model)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    assert_same_grads(results[0][1], results[1][1], rtol=0, atol=0)


def test_compiled_blocks_same_loss_and_grads_and_names():
    """`compile_blocks()` (the loop's --compile) fuses the blocks' elementwise work with inductor: the loss and the
    gradients match eager to float32 rounding, parameter names are unchanged, and KV-cached generation (which stays
    eager) gives the same logits as the full forward."""
    torch._dynamo.reset()
    data = TrainingSet(random_examples(4), 64, "test", 256)
    input_ids, targets = data.collate(list(range(4)), torch.device("cpu"))
    results = []
    for compiled in (False, True):
        model = make_model(dtype=torch.float32, lora=True)
        names = list(model.state_dict())
        if compiled:
            model.compile_blocks()
        model.train()
        loss = model(input_ids, targets=targets)
        loss.backward()
        results.append((loss.detach(), grads(model)))
        assert list(model.state_dict()) == names
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    assert_same_grads(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)
    model.eval()
    with torch.no_grad():
        full = model(input_ids[:1, :9])
        model.set_kv_cache(1, 16)
        cached = torch.cat([model(input_ids[:1, :8], input_pos=torch.arange(8)),
                            model(input_ids[:1, 8:9], input_pos=torch.tensor([8]))], dim=1)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-5)


def train_three_steps(dtype, optimizer_fn):
    model = make_model(dtype=dtype)
    optimizer = optimizer_fn(model)
    input_ids = torch.randint(0, 256, (2, 11), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        model(input_ids, targets=input_ids).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return optimizer, dict(model.named_parameters())


def per_tensor_adamw(model, args):
    """The plain AdamW loop over the same parameter groups as make_optimizer."""
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in make_optimizer(model, args.learning_rate, args.weight_decay).param_groups]
    return torch.optim.AdamW(groups, lr=args.learning_rate, foreach=False)


def test_fused_adamw_same_updates_as_per_tensor_loop():
    """The loop's optimizer (fused AdamW, decay only on matrices) moves the weights as the plain per-tensor AdamW;
    in bf16 its updates are at least as close to float64 ones (it rounds once per tensor, not once per op)."""
    args = TrainArgs(learning_rate=1e-2, weight_decay=0.1)
    start = dict(make_model().named_parameters())
    optimizer, fused = train_three_steps(torch.float32, lambda m: make_optimizer(m, args.learning_rate, args.weight_decay))
    assert optimizer.defaults["fused"]
    _, plain = train_three_steps(torch.float32, lambda m: per_tensor_adamw(m, args))
    for name in fused:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.allclose(fused["lm_head.weight"].double(), start["lm_head.weight"])  # they did move

    _, reference = train_three_steps(torch.float64, lambda m: per_tensor_adamw(m, args))
    _, fused16 = train_three_steps(torch.bfloat16, lambda m: make_optimizer(m, args.learning_rate, args.weight_decay))
    _, plain16 = train_three_steps(torch.bfloat16, lambda m: per_tensor_adamw(m, args))
    for name, ref in reference.items():
        update = ref.detach() - start[name].detach()
        error = lambda p: float((p.detach().double() - ref.detach()).norm() / update.norm())  # noqa: E731
        assert error(fused16[name]) <= 1.5 * error(plain16[name]) + 0.02, (name, error(fused16[name]), error(plain16[name]))


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


def test_benchmark_script_runs_our_step(tmp_path, root_dir, shared_dir):
    """The harness end to end on a 2-layer model: real Dolly lengths, JSON with throughput, memory and MFU."""
    config = tiny_config(vocab_size=512, block_size=256, n_embd=64, intermediate_size=128)
    config.save(tmp_path / "lit_config.json")
    cmd = [sys.executable, str(root_dir / "scripts" / "benchmark.py"), "--model", str(tmp_path / "lit_config.json"),
           "--method", "lora", "--precision", "32-true", "--dataset", "dolly", "--max_examples", "200",
           "--max_seq_length", "128", "--micro_batch_size", "4", "--batch_size", "8", "--steps_per_run", "2",
           "--warmup_steps", "1", "--runs", "2", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    ours = report["ours"]
    assert ours["tokens_per_s"] >= ours["non_padding_tokens_per_s"] > 0
    assert ours["peak_memory_gb"] > 0 and report["machine"]["matmul_tflops"] > 0 and 0 < ours["mfu"]
    assert len(ours["run_seconds"]) == 2
    r, d, kv = 8, 64, 2 * 16  # LoRA r=8 on q (64 -> 64) and v (64 -> 2 groups x 16) in each of 2 layers
    assert ours["trainable_parameters"] == 2 * ((r * d + d * r) + (r * d + kv * r))
    data = report["data"]
    assert 0 < data["non_padding_share_epoch_plain_batching"] < data["non_padding_share_epoch_loop_batching"] <= 1
    assert data["prepare_seconds"] > 0 and report["setting"]["method"] == "lora"


def test_benchmark_script_user_errors(tmp_path, root_dir):
    cmd = [sys.executable, str(root_dir / "scripts" / "benchmark.py"), "--compare_litgpt", "true",
           "--litgpt_python", str(tmp_path / "nowhere" / "python")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "nowhere" in proc.stderr and "pip install" in proc.stderr
