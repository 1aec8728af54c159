"""One optimizer step and one validation pass: the compute of the training loop, as plain functions of their inputs
(the loop in `lit_gpt.train.loop` calls them; so does scripts/dev/benchmark.py).

Loss: cross-entropy on response tokens only (labels -100 elsewhere), evaluated only where there is a target (the LM
head runs on those positions alone, `lit_gpt.fused_loss`) and normalized by the number of target tokens in the whole
global batch, so the gradient is the token mean over the batch however it is split over micro-batches and ranks,
or packed into rows (`lit_gpt.train.packing`).
"""

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from lit_gpt.data.prepared import INSTRUCTION_FORMAT
from lit_gpt.train.dataset import TrainingSet, padding_stats, split_batch, training_sets
from lit_gpt.train.packing import Packing


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based): linear warmup, cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel updates every tensor in one pass instead of a dozen small ops per tensor (full fine-tuning of
    # SmolLM2-135M on 2 CPU cores: ~6x faster optimizer step); same update up to float rounding
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate, fused=fused)


@dataclass
class StepResult:
    loss: float  # mean token loss over the global batch
    grad_norm: float  # before clipping
    tokens: int  # real (non-padding) tokens of the batch
    padded_tokens: int  # tokens processed, padding included
    metrics: dict = field(default_factory=dict)  # more to log ("train_accuracy", ...), by the objective


class NonFiniteStep(Exception):
    """The loss or the gradient norm of a step is not finite; the weights were not updated."""


def train_step(fabric, model, optimizer, scheduler, data: TrainingSet, batch: list[int], *, accum: int, seed: int,
               step: int, grad_clip: Optional[float], precision: str, packing: Optional[Packing] = None) -> StepResult:
    """One optimizer step on a global batch (example indices): this rank's share of its micro-batches is run
    forward and backward, gradients are accumulated (synchronized across ranks on the last micro-batch only),
    clipped, and the optimizer and scheduler step. Raises NonFiniteStep, with the gradients cleared, instead of
    applying a non-finite update. packing: the batch's examples packed into rows (then `accum` is unused: the
    rows decide how many micro-batches there are)."""
    world, rank = fabric.world_size, fabric.global_rank
    if packing is None:
        micro_batches = split_batch(batch, accum * world)
    else:
        micro_batches = packing.micro_batches(data.lengths, batch, world)
    mine = micro_batches[rank::world]
    n_targets = max(1, sum(data.n_targets[i] for i in batch))
    seed_step(seed, step, rank)
    loss_sum = torch.zeros((), device=fabric.device, dtype=torch.float64)
    for k, part in enumerate(mine):
        if packing is None:
            (input_ids, targets), segments = data.collate(part, fabric.device), None
        else:
            input_ids, targets, segments = packing.collate(data, part, fabric.device)
        with fabric.no_backward_sync(model, enabled=k < len(mine) - 1):
            # summed cross-entropy over the target positions; the LM head runs on those alone, chunk by chunk
            loss = model(input_ids, targets=targets, segments=segments)
            # ranks' gradients are averaged: scale so the total is the token mean over the whole global batch
            fabric.backward(loss * (world / n_targets))
        loss_sum += loss.detach()
    mean_loss = float(fabric.all_reduce(loss_sum, reduce_op="sum")) / n_targets
    grad_norm = apply_update(fabric, model, optimizer, scheduler, mean_loss, grad_clip, precision)
    real, padded = (padding_stats if packing is None else packing.padding_stats)(data, micro_batches)
    return StepResult(mean_loss, grad_norm, real, padded)


def seed_step(seed: int, step: int, rank: int) -> None:
    """Dropout masks and NEFTune noise from (seed, step, rank): a resumed run draws the same ones."""
    torch.manual_seed(hash((seed, step, rank)) & 0x7FFF_FFFF_FFFF_FFFF)


def apply_update(fabric, model, optimizer, scheduler, mean_loss: float, grad_clip: Optional[float],
                 precision: str) -> float:
    """The end of a step whose gradients are accumulated: clip, then the optimizer and scheduler step; returns the
    gradient norm before clipping. Raises NonFiniteStep, with the gradients cleared, instead of applying a
    non-finite update."""
    # the norm is computed even without clipping: a finite loss can still give non-finite gradients
    grad_norm = float(fabric.clip_gradients(model, optimizer, max_norm=grad_clip or math.inf,
                                            error_if_nonfinite=False))
    problem = None if math.isfinite(mean_loss) else f"training loss is {mean_loss}"
    if problem is None and not math.isfinite(grad_norm) and precision != "16-mixed":  # fp16's scaler skips those
        problem = f"gradient norm is {grad_norm}"
    if problem is not None:
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteStep(problem)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return grad_norm


def validation_batches(lengths: list, micro_batch_size: int, eval_iters: Optional[int], world: int,
                       rank: int) -> list:
    """This rank's validation micro-batches (example indices): the first eval_iters x micro_batch_size x world
    examples (all without eval_iters), grouped by length, every world-th micro-batch."""
    n = len(lengths) if eval_iters is None else min(len(lengths), eval_iters * micro_batch_size * world)
    by_length = sorted(range(n), key=lengths.__getitem__)
    batches = [by_length[s: s + micro_batch_size] for s in range(0, n, micro_batch_size)]
    per_rank = math.ceil(len(batches) / world)
    mine = batches[rank::world]
    return mine + [[]] * (per_rank - len(mine))  # every rank runs as many forwards (FSDP gathers weights in each)


@torch.no_grad()
def validate(fabric, model, data: TrainingSet, micro_batch_size: int, eval_iters: Optional[int] = None) -> float:
    """Mean response-token loss over the test set (or its first eval_iters x micro_batch_size x ranks examples),
    each rank taking every world_size-th micro-batch; sums and token counts are reduced across ranks."""
    mine = validation_batches(data.lengths, micro_batch_size, eval_iters, fabric.world_size, fabric.global_rank)
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=fabric.device, dtype=torch.float64)
    for indices in mine:
        input_ids, targets = data.collate(indices, fabric.device)
        totals[0] += model(input_ids, targets=targets)
        totals[1] += (targets != -100).sum()
    totals = fabric.all_reduce(totals, reduce_op="sum")
    model.train(was_training)
    return float(totals[0] / totals[1].clamp(min=1))


class TokenObjective:
    """What the loop trains, as a strategy it calls: instruction tuning's next-token loss on the responses (the
    default; finetune/lora.py and full.py). `lit_gpt.train.preference_step.PreferenceObjective` is the other
    (finetune/dpo.py). An objective names its prepared data format and the script of its runs, builds the training
    and validation sets, prepares anything the steps need once (`prepare`), runs an optimizer step and validates."""

    data_format = INSTRUCTION_FORMAT
    script: Optional[str] = None  # None: the method's script (finetune/lora.py or full.py)

    def training_sets(self, train_raw: list, test_raw: list, data_dir, config, override_max_seq_length, print):
        return training_sets(train_raw, test_raw, data_dir, config, override_max_seq_length, print=print)

    def prepare(self, fabric, model, train_set, val_set, micro_batch_size: int) -> None:
        pass

    @staticmethod
    def packing_note(max_seq_length: int, micro_batch_size: int) -> str:
        return (f"packing: examples share rows of up to {max_seq_length} tokens, {micro_batch_size} rows per "
                "micro-batch")

    def train_step(self, *args, **kwargs) -> StepResult:
        return train_step(*args, **kwargs)

    def validate(self, fabric, model, data, micro_batch_size: int, eval_iters: Optional[int] = None) -> dict:
        """{"val_loss": ...} and anything else to log, by its log name."""
        return {"val_loss": validate(fabric, model, data, micro_batch_size, eval_iters)}
