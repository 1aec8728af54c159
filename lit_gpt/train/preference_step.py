"""Preference tuning in the one training loop: `PreferenceObjective` is the objective (see `lit_gpt.train.step`)
that finetune/dpo.py hands to `lit_gpt.train.loop.finetune`. Its data are prepared pairs (lit_gpt/data/
preferences.py), its step scores each pair's chosen and rejected answer and applies a loss of
`lit_gpt.train.preference` (DPO, IPO, SimPO or ORPO).

The reference model of DPO and IPO is the frozen base, and no second copy of it is held: with LoRA it is the model
being trained with its LoRA layers switched off (`lora_disabled`), one extra forward without gradients per step;
with full fine-tuning the base model's log-probabilities of every pair are computed once before training
(`ReferenceLogps`, kept beside the pairs), since the weights themselves change.

With --packing true a training micro-batch's sequences (chosen and rejected sides alike) share rows, best-fit
decreasing into rows as long as its longest sequence (so no row is longer than without packing, and memory never
grows), kept apart by `segments` as packed instruction examples are: each sequence gets the log-probabilities it
gets alone, with fewer padding positions through the model.

Logged besides the loss (per step as train_*, at each validation as val_*): the mean chosen and rejected rewards,
their difference (reward_margin) and how often the chosen answer's reward is the higher (accuracy).
"""

from dataclasses import dataclass
from typing import Optional

import torch

from lit_gpt.data.preferences import PREFERENCE_FORMAT
from lit_gpt.lora import lora_disabled
from lit_gpt.train.args import REFERENCE_LOSSES, PreferenceArgs
from lit_gpt.train.dataset import split_batch, training_sets
from lit_gpt.train.packing import best_fit_decreasing, lay_out_rows
from lit_gpt.train.preference import PreferenceLoss, dpo_loss, ipo_loss, orpo_loss, simpo_loss
from lit_gpt.train.step import StepResult, apply_update, seed_step, validation_batches
from lit_gpt.utils import UserError

PAIR_TENSORS = ("prompt_ids", "chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask")


@dataclass
class ReferenceLogps:
    """The frozen reference model's log-probability of each pair's chosen and rejected answer, (N,) float64 on the
    CPU (holding the float32 values exactly): summed over the answer's tokens, or their average where the loss uses
    averages (IPO)."""

    chosen: torch.Tensor
    rejected: torch.Tensor


@dataclass
class PairLogps:
    """Log-probabilities of a micro-batch's answers, (B,) each: summed and averaged over their tokens."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_avg: torch.Tensor
    rejected_avg: torch.Tensor


class PreferenceSet:
    """Prepared pairs as the loop sees them: per pair the chosen and the rejected sequence (prompt + answer) shifted
    for next-token prediction (inputs, targets) and the mask of the trained answer tokens, cut to max_seq_length
    inputs; a pair left without a trained token on either side is dropped (`raw` keeps the others, index-aligned).
    `lengths` (the longer side) and `raw` serve the loop's batching; `reference` is set by `PreferenceObjective`."""

    NOUN, EMPTY = "pairs", "no pair with trained answer tokens on both sides"
    DROP_REASON = "an answer with no token left"

    @staticmethod
    def raw_length(pair) -> Optional[int]:
        """The inputs of a prepared pair's longer side (prompt + answer, less the token shifted off)."""
        if not (isinstance(pair, dict) and "prompt_ids" in pair):
            return None
        return len(pair["prompt_ids"]) + max(len(pair["chosen_ids"]), len(pair["rejected_ids"])) - 1

    def __init__(self, raw: list, max_seq_length: int, source: str, vocab_size: int) -> None:
        self.raw, self.rows = [], []
        self.truncated = self.dropped = 0
        self.reference: Optional[ReferenceLogps] = None
        for i, pair in enumerate(raw):
            sides = [_side(pair, answer, max_seq_length, vocab_size, f"{source} pair {i}")
                     for answer in ("chosen", "rejected")]
            self.truncated += any(cut for _, _, _, cut in sides)
            if not all(mask.any() for _, _, mask, _ in sides):
                self.dropped += 1
                continue
            self.raw.append(pair)
            self.rows.append([side[:3] for side in sides])
        self.lengths = [max(len(chosen[0]), len(rejected[0])) for chosen, rejected in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def collate(self, indices: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, targets, mask), (2B, T) right-padded: the chosen sequences of the pairs, then their rejected
        ones. An empty list gives one pair of padding rows without a trained token (a rank with no pair in a
        micro-batch still runs the forward and backward its peers wait for)."""
        sides = [side for k in (0, 1) for side in ([self.rows[i][k] for i in indices] or [_PADDING])]
        T = max(len(inputs) for inputs, _, _ in sides)
        input_ids = torch.zeros(len(sides), T, dtype=torch.long)
        targets = torch.zeros(len(sides), T, dtype=torch.long)
        mask = torch.zeros(len(sides), T, dtype=torch.bool)
        for row, (inputs, target, trained) in enumerate(sides):
            input_ids[row, : len(inputs)], targets[row, : len(inputs)], mask[row, : len(inputs)] = \
                inputs, target, trained
        return input_ids.to(device), targets.to(device), mask.to(device)

    def collate_packed(self, indices: list, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(input_ids, targets, mask, segments, sequence), (rows, T): the sequences `collate` would give (chosen
        sides, then rejected) packed best-fit decreasing into rows of at most the longest one's length; segments
        0, 1, ... per sequence in its row and -1 on padding; sequence: each position's index in collate's order."""
        sides, rows, _ = self._packed_rows(indices)
        batch = lay_out_rows(rows, sides.__getitem__, ((0, torch.long), (0, torch.long), (False, torch.bool)))
        return tuple(t.to(device) for t in batch)

    def _packed_rows(self, indices: list) -> tuple[list, list, int]:
        """(the sequences in collate's order, the rows of positions into them, the row length)."""
        sides = [side for k in (0, 1) for side in ([self.rows[i][k] for i in indices] or [_PADDING])]
        T = max(len(inputs) for inputs, _, _ in sides)
        return sides, best_fit_decreasing([len(inputs) for inputs, _, _ in sides], T), T

    def tokens(self, micro_batches: list, packed: bool = False) -> tuple[int, int]:
        """(real tokens, tokens processed with padding) of the micro-batches, both sides of each pair."""
        real = sum(len(side[0]) for mb in micro_batches for i in mb for side in self.rows[i])
        if packed:
            return real, sum(len(rows) * T for _, rows, T in map(self._packed_rows, filter(None, micro_batches)))
        padded = sum(2 * len(mb) * max(self.lengths[i] for i in mb) for mb in micro_batches if mb)
        return real, padded


_PADDING = (torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.bool))


def _side(pair: dict, answer: str, max_seq_length: int, vocab_size: int, where: str):
    """(inputs, targets, trained mask, truncated) of one side of a pair."""
    if not isinstance(pair, dict) or not all(isinstance(pair.get(k), torch.Tensor) and pair[k].ndim == 1
                                             for k in PAIR_TENSORS):
        raise UserError(f"{where}: needs 1-D tensors {', '.join(PAIR_TENSORS)}; prepare the data again with "
                        "scripts/prepare_preferences.py")
    ids = torch.cat([pair["prompt_ids"], pair[f"{answer}_ids"]]).long()
    trained = torch.cat([torch.zeros(len(pair["prompt_ids"]), dtype=torch.bool), pair[f"{answer}_mask"].bool()])
    if len(ids) < 2 or len(trained) != len(ids):
        raise UserError(f"{where}: {answer}_ids and {answer}_mask differ in length or are empty; prepare the data "
                        "again with scripts/prepare_preferences.py")
    if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
        raise UserError(f"{where}: token id {int(ids.max())} is outside the model's vocabulary of {vocab_size}; "
                        "the data was prepared for another model")
    cut = len(ids) - 1 > max_seq_length
    ids, trained = ids[: max_seq_length + 1], trained[: max_seq_length + 1]
    return ids[:-1], ids[1:], trained[1:], cut


def answer_logps(model, input_ids: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                 segments: Optional[torch.Tensor] = None, sequence: Optional[torch.Tensor] = None) -> tuple:
    """(summed, averaged) log-probability of each sequence's masked targets, float32: one a row, or with packed
    rows (`PreferenceSet.collate_packed`) one per index of `sequence`. What `lit_gpt.train.preference.
    sequence_logps` computes, with the LM head run on the masked positions alone and fused with the log-softmax
    (`lit_gpt.fused_loss`): their (N, vocab) logits never exist all at once."""
    token_logps = -model(input_ids, targets=targets.masked_fill(~mask, -100), reduction="none",
                         segments=segments)  # (N,) row-major
    owner = mask.nonzero(as_tuple=True)[0] if sequence is None else sequence[mask]
    count = len(mask) if sequence is None else int(sequence.max()) + 1
    total = torch.zeros(count, dtype=token_logps.dtype, device=token_logps.device).index_add(0, owner, token_logps)
    tokens = torch.zeros(count, device=mask.device).index_add(0, owner, torch.ones_like(owner, dtype=torch.float))
    return total, total / tokens.clamp(min=1).to(total.dtype)


def pair_logps(model, *batch: torch.Tensor) -> PairLogps:
    """The chosen (first half of the sequences) and rejected (second half) answers' log-probabilities of a batch
    as `PreferenceSet.collate` or `collate_packed` makes it."""
    total, average = answer_logps(model, *batch)
    half = len(total) // 2
    return PairLogps(total[:half], total[half:], average[:half], average[half:])


class PreferenceObjective:
    """The objective of finetune/dpo.py (see the module docstring): `args` names the loss and its settings, `lora`
    whether LoRA is trained (then the reference is the model with LoRA off)."""

    data_format = PREFERENCE_FORMAT
    script = "dpo"

    def __init__(self, args: PreferenceArgs, lora: bool) -> None:
        self.args, self.lora = args, lora
        self.uses_reference = args.loss in REFERENCE_LOSSES

    def training_sets(self, train_raw: list, test_raw: list, data_dir, config, override_max_seq_length, print):
        return training_sets(train_raw, test_raw, data_dir, config, override_max_seq_length, print=print,
                             kind=PreferenceSet)

    @torch.no_grad()
    def prepare(self, fabric, model, train_set: PreferenceSet, val_set: PreferenceSet, micro_batch_size: int) -> None:
        """Full fine-tuning with DPO or IPO: the base model's log-probabilities of every pair, once, before any
        update. Every rank computes them all (the same forwards on each, as FSDP needs)."""
        if not self.uses_reference or self.lora:
            return
        was_training = model.training
        model.eval()
        for pairs in (train_set, val_set):
            chosen, rejected = (torch.zeros(len(pairs), dtype=torch.float64) for _ in range(2))
            for start in range(0, len(pairs), micro_batch_size):
                indices = list(range(start, min(start + micro_batch_size, len(pairs))))
                logps = pair_logps(model, *pairs.collate(indices, fabric.device))
                chosen[indices], rejected[indices] = (x.double().cpu() for x in self._reference_form(logps))
            pairs.reference = ReferenceLogps(chosen, rejected)
        model.train(was_training)
        fabric.print(f"reference log-probabilities of the base model: {len(train_set)} + {len(val_set)} pairs")

    def _reference_form(self, logps: PairLogps) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-probabilities the loss compares with the reference's: IPO's are averages, DPO's sums."""
        return (logps.chosen_avg, logps.rejected_avg) if self.args.loss == "ipo" else (logps.chosen, logps.rejected)

    def reference(self, fabric, model, data: PreferenceSet, indices: list, batch: tuple) -> Optional[tuple]:
        """The reference log-probabilities of the pairs `indices` (collated as `batch`), or None for a loss
        without a reference."""
        if not self.uses_reference:
            return None
        if not indices:  # the padding pair of an empty micro-batch
            return torch.zeros(1, device=fabric.device), torch.zeros(1, device=fabric.device)
        if data.reference is not None:
            return data.reference.chosen[indices].to(fabric.device), data.reference.rejected[indices].to(fabric.device)
        if not self.lora:
            raise RuntimeError("full fine-tuning needs the reference log-probabilities that prepare() computes")
        with torch.no_grad(), lora_disabled(model):
            return self._reference_form(pair_logps(model, *batch))

    def loss(self, policy: PairLogps, reference: Optional[tuple]) -> PreferenceLoss:
        args, beta = self.args, self.args.loss_beta
        if args.loss == "dpo":
            return dpo_loss(policy.chosen, policy.rejected, *reference, beta=beta,
                            label_smoothing=args.label_smoothing)
        if args.loss == "ipo":
            return ipo_loss(policy.chosen_avg, policy.rejected_avg, *reference, tau=beta)
        if args.loss == "simpo":
            return simpo_loss(policy.chosen_avg, policy.rejected_avg, beta=beta, gamma=args.simpo_gamma)
        return orpo_loss(policy.chosen_avg, policy.rejected_avg, -policy.chosen_avg, lam=beta)

    @staticmethod
    def packing_note(max_seq_length: int, micro_batch_size: int) -> str:
        return (f"packing: each micro-batch's {2 * micro_batch_size} sequences ({micro_batch_size} pairs) share rows "
                "as long as its longest sequence")

    def pair_losses(self, fabric, model, data: PreferenceSet, indices: list, packed: bool = False) -> PreferenceLoss:
        batch = (data.collate_packed if packed else data.collate)(indices, fabric.device)
        reference = self.reference(fabric, model, data, indices, batch)  # first: the policy's forward is the last
        return self.loss(pair_logps(model, *batch), reference)

    def train_step(self, fabric, model, optimizer, scheduler, data: PreferenceSet, batch: list[int], *, accum: int,
                   seed: int, step: int, grad_clip: Optional[float], precision: str, packing=None) -> StepResult:
        """One optimizer step on a global batch of pairs, as `lit_gpt.train.step.train_step` runs one on
        examples: the loss is the mean over the batch's pairs however they are split over micro-batches and ranks."""
        world, rank = fabric.world_size, fabric.global_rank
        micro_batches = split_batch(batch, accum * world)
        mine = micro_batches[rank::world]
        seed_step(seed, step, rank)
        sums = torch.zeros(len(SUMS), device=fabric.device, dtype=torch.float64)
        for k, part in enumerate(mine):
            with fabric.no_backward_sync(model, enabled=k < len(mine) - 1):
                out = self.pair_losses(fabric, model, data, part, packed=packing is not None)
                # ranks' gradients are averaged: scale so the total is the mean over the global batch's pairs
                fabric.backward(out.losses.sum() * (world / len(batch) if part else 0.0))
            sums += _sums(out, part)
        metrics = _metrics(fabric.all_reduce(sums, reduce_op="sum"), "train")
        mean_loss = metrics.pop("train_loss")
        grad_norm = apply_update(fabric, model, optimizer, scheduler, mean_loss, grad_clip, precision)
        return StepResult(mean_loss, grad_norm, *data.tokens(micro_batches, packed=packing is not None),
                          metrics=metrics)

    @torch.no_grad()
    def validate(self, fabric, model, data: PreferenceSet, micro_batch_size: int,
                 eval_iters: Optional[int] = None) -> dict:
        """The val_* metrics over the test pairs (or the first eval_iters micro-batches per rank)."""
        mine = validation_batches(data.lengths, micro_batch_size, eval_iters, fabric.world_size, fabric.global_rank)
        was_training = model.training
        model.eval()
        sums = torch.zeros(len(SUMS), device=fabric.device, dtype=torch.float64)
        for indices in mine:
            sums += _sums(self.pair_losses(fabric, model, data, indices), indices)
        model.train(was_training)
        return _metrics(fabric.all_reduce(sums, reduce_op="sum"), "val")


SUMS = ("loss", "chosen_reward", "rejected_reward", "correct", "pairs")  # summed over micro-batches and ranks


def _sums(out: PreferenceLoss, indices: list) -> torch.Tensor:
    if not indices:  # the padding pair counts for nothing
        return torch.zeros(len(SUMS), device=out.losses.device, dtype=torch.float64)
    values = (out.losses.detach().sum(), out.chosen_rewards.sum(), out.rejected_rewards.sum(),
              (out.chosen_rewards > out.rejected_rewards).sum(), torch.tensor(len(indices)))
    return torch.stack([v.to(out.losses.device, torch.float64) for v in values])


def _metrics(sums: torch.Tensor, prefix: str) -> dict:
    """{prefix}_loss, _chosen_reward, _rejected_reward, _reward_margin and _accuracy: means over the pairs."""
    loss, chosen, rejected, correct, pairs = (float(v) for v in sums)
    n = max(pairs, 1.0)
    return {f"{prefix}_loss": loss / n, f"{prefix}_chosen_reward": chosen / n,
            f"{prefix}_rejected_reward": rejected / n, f"{prefix}_reward_margin": (chosen - rejected) / n, f"{prefix}_accuracy": correct / n}
