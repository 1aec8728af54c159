"""lit_gpt/train/preference_step.py: pairs scored on a tiny model (log-probabilities worked out token by token), each
loss against its formula, DPO and IPO against TRL's DPOTrainer, the reference model (LoRA switched off; full
fine-tuning's log-probabilities computed once) and a step split into micro-batches."""

import contextlib
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from helpers import make_model
from lit_gpt.lora import lora_disabled
from lit_gpt.train.args import PreferenceArgs
from lit_gpt.train.preference import sequence_logps
from lit_gpt.train.preference_step import (PreferenceObjective, PreferenceSet, ReferenceLogps, answer_logps,
                                           pair_logps)
from lit_gpt.train.step import make_optimizer
from lit_gpt.utils import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny training steps: see conftest.one_thread


def pairs(n: int = 4, seed: int = 0) -> list:
    """Prepared pairs (lit_gpt/data/preferences.py's fields) of random tokens; each answer's first token untrained,
    as a chat template's token after the prompt is."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        pair = {"prompt_ids": torch.randint(0, 256, (3 + i,), generator=g), "source": "test"}
        for answer, length in (("chosen", 4 + i), ("rejected", 6 - i % 3)):
            pair[f"{answer}_ids"] = torch.randint(0, 256, (length,), generator=g)
            pair[f"{answer}_mask"] = torch.tensor([False] + [True] * (length - 1))
        out.append(pair)
    return out


def hand_logps(model, pair: dict, answer: str) -> tuple[float, float]:
    """(sum, average) of log p(token | everything before it) over the trained tokens of one answer, position by
    position from the full logits of prompt + answer."""
    ids = torch.cat([pair["prompt_ids"], pair[f"{answer}_ids"]])
    trained = torch.cat([torch.zeros(len(pair["prompt_ids"]), dtype=torch.bool), pair[f"{answer}_mask"]])
    with torch.no_grad():
        logits = model(ids[None, :-1])[0].double()
    terms = [float(torch.log_softmax(logits[t - 1], -1)[ids[t]]) for t in range(1, len(ids)) if trained[t]]
    return sum(terms), sum(terms) / len(terms)


class OneProcess:
    """The bits of Fabric that the preference step uses, for a single process."""

    global_rank, world_size, device = 0, 1, torch.device("cpu")

    def no_backward_sync(self, model, enabled):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def clip_gradients(self, model, optimizer, max_norm, error_if_nonfinite):
        return torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_norm)

    def all_reduce(self, tensor, reduce_op):
        return tensor

    def print(self, *args):
        pass


def test_answer_logps_are_the_tokens_log_probabilities():
    model = make_model()
    data = PreferenceSet(pairs(), max_seq_length=64, source="train.pt", vocab_size=256)
    input_ids, targets, mask = data.collate([0, 1, 2, 3], torch.device("cpu"))
    total, average = answer_logps(model, input_ids, targets, mask)
    hand = [hand_logps(model, p, answer) for answer in ("chosen", "rejected") for p in data.raw]
    assert total.tolist() == pytest.approx([h[0] for h in hand], abs=1e-9)
    assert average.tolist() == pytest.approx([h[1] for h in hand], abs=1e-9)
    # the same as lit_gpt.train.preference.sequence_logps on the full logits (there: every position's head)
    with torch.no_grad():
        full = sequence_logps(model(input_ids), targets, mask)
    torch.testing.assert_close(total.detach(), full)


def by_hand(loss: str, beta: float, policy: tuple, reference: tuple) -> tuple[float, float, float]:
    """(loss, chosen reward, rejected reward) of one pair from its (sum, average) log-probabilities, by the
    papers' formulas, in plain floats."""
    (c, c_avg), (r, r_avg) = policy
    (rc, rc_avg), (rr, rr_avg) = reference
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    if loss == "dpo":
        return -math.log(sigmoid(beta * ((c - rc) - (r - rr)))), beta * (c - rc), beta * (r - rr)
    if loss == "ipo":
        return ((c_avg - rc_avg) - (r_avg - rr_avg) - 1 / (2 * beta)) ** 2, beta * (c_avg - rc_avg), beta * (r_avg - rr_avg)
    if loss == "simpo":
        return -math.log(sigmoid(beta * c_avg - beta * r_avg - 0.5)), beta * c_avg, beta * r_avg
    odds = lambda avg: math.exp(avg) / (1 - math.exp(avg))  # noqa: E731
    return -c_avg - beta * math.log(sigmoid(math.log(odds(c_avg) / odds(r_avg)))), beta * c_avg, beta * r_avg


@pytest.mark.parametrize("loss", ["dpo", "ipo", "simpo", "orpo"])
def test_each_loss_by_hand_on_a_tiny_model(loss):
    policy_model, reference_model = make_model(seed=0), make_model(seed=1)
    data = PreferenceSet(pairs(), max_seq_length=64, source="train.pt", vocab_size=256)
    objective = PreferenceObjective(PreferenceArgs(loss=loss, beta=0.3), lora=False)
    batch = data.collate([0, 1, 2, 3], torch.device("cpu"))
    reference = objective._reference_form(pair_logps(reference_model, *batch)) if loss in ("dpo", "ipo") else None
    out = objective.loss(pair_logps(policy_model, *batch), reference)
    for i, pair in enumerate(data.raw):
        expected = by_hand(loss, 0.3, [hand_logps(policy_model, pair, a) for a in ("chosen", "rejected")],
                           [hand_logps(reference_model, pair, a) for a in ("chosen", "rejected")])
        got = (float(out.losses[i].detach()), float(out.chosen_rewards[i]), float(out.rejected_rewards[i]))
        assert got == pytest.approx(expected, abs=1e-9), (loss, i)


def trl_dpo_loss(loss_type: str, beta: float, token_logps: torch.Tensor, reference: tuple, mask: torch.Tensor):
    """TRL's DPOTrainer._compute_loss (trl 1.16) on given log-probabilities: the trainer is built without __init__
    (which wants a model, a tokenizer and a dataset) and holds the attributes that method reads; the stand-in model
    returns `token_logps` (2B, T) as TRL's fused head would, reference log-probabilities precomputed. Returns
    (loss, TRL's logged metrics)."""
    from trl.trainer.dpo_trainer import DPOTrainer

    trainer = DPOTrainer.__new__(DPOTrainer)
    rows, T = token_logps.shape
    stand_in = torch.nn.Module().train()
    stand_in.forward = lambda **kwargs: SimpleNamespace(
        log_probs=token_logps, entropy=torch.zeros(rows, T), mean_logits=torch.zeros(rows, T),
        is_top1=torch.zeros(rows, T, dtype=torch.bool))
    identity = lambda x: x  # noqa: E731
    vars(trainer).update(
        model=stand_in, beta=beta, loss_types=[loss_type], loss_weights=[1.0], precompute_ref_logps=True,
        ld_alpha=None, f_divergence_type="reverse_kl", label_smoothing=0.0, use_weighting=False,
        aux_loss_enabled=False, _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
        accelerator=SimpleNamespace(device=torch.device("cpu"), gather=identity, gather_for_metrics=identity,
                                    unwrap_model=identity))
    # TRL's batch holds the unshifted sequences: completion_mask[:, 1:] is the mask of the predicted tokens
    inputs = {"input_ids": torch.zeros(rows, T + 1, dtype=torch.long),
              "attention_mask": torch.ones(rows, T + 1, dtype=torch.long),
              "completion_mask": torch.cat([torch.zeros(rows, 1, dtype=torch.long), mask.long()], dim=1),
              "ref_chosen_logps": reference[0], "ref_rejected_logps": reference[1]}
    loss = trainer._compute_loss(stand_in, inputs, return_outputs=False)
    return float(loss), {k: v[-1] for k, v in trainer._metrics["train"].items()}


@pytest.mark.slow  # importing trl takes 3 to 7 s
@pytest.mark.parametrize("loss, trl_name", [("dpo", "sigmoid"), ("ipo", "ipo")])
def test_dpo_and_ipo_equal_trl(loss, trl_name):
    policy_model, reference_model = make_model(seed=0), make_model(seed=1)
    data = PreferenceSet(pairs(), max_seq_length=64, source="train.pt", vocab_size=256)
    input_ids, targets, mask = data.collate([0, 1, 2, 3], torch.device("cpu"))
    with torch.no_grad():
        logits = policy_model(input_ids)
        token_logps = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
        reference_sums = answer_logps(reference_model, input_ids, targets, mask)[0]
    half = len(reference_sums) // 2
    trl_loss, trl_metrics = trl_dpo_loss(trl_name, 0.25, token_logps, (reference_sums[:half], reference_sums[half:]),
                                         mask)

    objective = PreferenceObjective(PreferenceArgs(loss=loss, beta=0.25), lora=False)
    reference = objective._reference_form(pair_logps(reference_model, input_ids, targets, mask))
    ours = objective.loss(pair_logps(policy_model, input_ids, targets, mask), reference)
    assert float(ours.loss.detach()) == pytest.approx(trl_loss, abs=1e-5)
    if loss == "dpo":  # TRL's rewards are beta times the summed log-ratios (also for IPO, whose ours are averaged)
        assert float(ours.chosen_rewards.mean()) == pytest.approx(trl_metrics["rewards/chosen"], abs=1e-5)
        assert float(ours.rejected_rewards.mean()) == pytest.approx(trl_metrics["rewards/rejected"], abs=1e-5)
        assert float(ours.accuracy) == trl_metrics["rewards/accuracies"]
    assert 0 < trl_loss < 10


def test_the_lora_reference_is_the_base_model():
    base, lora_model = make_model(seed=0), make_model(seed=0, lora=True)  # the same base weights, B not zero
    data = PreferenceSet(pairs(), max_seq_length=64, source="train.pt", vocab_size=256)
    batch = data.collate([0, 1, 2], torch.device("cpu"))
    objective = PreferenceObjective(PreferenceArgs(loss="dpo"), lora=True)
    reference = objective.reference(OneProcess(), lora_model, data, [0, 1, 2], batch)
    with torch.no_grad():
        expected, with_lora = pair_logps(base, *batch), pair_logps(lora_model, *batch)
    torch.testing.assert_close(reference[0], expected.chosen)
    torch.testing.assert_close(reference[1], expected.rejected)
    assert not torch.allclose(with_lora.chosen, expected.chosen)  # LoRA is on again afterwards
    with pytest.raises(ValueError, match="unmerged"):
        next(m for m in lora_model.modules() if hasattr(m, "merge")).merge()
        with lora_disabled(lora_model):
            pass


def test_full_reference_is_computed_once_and_the_first_step_starts_at_log_2():
    model = make_model(seed=0)
    data = PreferenceSet(pairs(6), max_seq_length=64, source="train.pt", vocab_size=256)
    val = PreferenceSet(pairs(2, seed=1), max_seq_length=64, source="test.pt", vocab_size=256)
    objective = PreferenceObjective(PreferenceArgs(loss="dpo"), lora=False)
    objective.prepare(OneProcess(), model, data, val, micro_batch_size=4)
    with torch.no_grad():
        base = pair_logps(model, *data.collate(list(range(6)), torch.device("cpu")))
    assert isinstance(data.reference, ReferenceLogps) and isinstance(val.reference, ReferenceLogps)
    torch.testing.assert_close(data.reference.chosen, base.chosen)
    torch.testing.assert_close(data.reference.rejected, base.rejected)
    reference_before = data.reference.chosen.clone()

    optimizer = make_optimizer(model, 1e-2, 0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    first = objective.train_step(OneProcess(), model, optimizer, scheduler, data, [0, 1, 2, 3, 4, 5], accum=2,
                                 seed=0, step=0, grad_clip=None, precision="64-true")
    assert first.loss == pytest.approx(math.log(2), abs=1e-6)  # the policy is its reference: every margin 0
    assert first.metrics["train_accuracy"] == 0.0 and first.metrics["train_reward_margin"] == pytest.approx(0)
    second = objective.train_step(OneProcess(), model, optimizer, scheduler, data, [0, 1, 2, 3, 4, 5], accum=2,
                                  seed=0, step=1, grad_clip=None, precision="64-true")
    assert second.loss < first.loss and second.metrics["train_reward_margin"] > 0
    assert torch.equal(data.reference.chosen, reference_before)  # computed once, from the base weights
    val_metrics = objective.validate(OneProcess(), model, val, micro_batch_size=1)
    assert set(val_metrics) == {"val_loss", "val_chosen_reward", "val_rejected_reward", "val_reward_margin",
                                "val_accuracy"}


def test_a_step_is_the_same_however_the_batch_is_split():
    data = PreferenceSet(pairs(5), max_seq_length=64, source="train.pt", vocab_size=256)
    objective = PreferenceObjective(PreferenceArgs(loss="dpo"), lora=True)
    results, weights = [], []
    for accum in (1, 2, 5, 7):  # 7 micro-batches of 5 pairs: two are empty (a padding pair that counts for nothing)
        model = make_model(seed=0, lora=True)
        optimizer = make_optimizer(model, 1e-2, 0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        results.append(objective.train_step(OneProcess(), model, optimizer, scheduler, data, [0, 1, 2, 3, 4],
                                            accum=accum, seed=0, step=0, grad_clip=None, precision="64-true"))
        weights.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    for result, weight in zip(results[1:], weights[1:]):
        assert result.loss == pytest.approx(results[0].loss, abs=1e-12)
        assert result.metrics == pytest.approx(results[0].metrics, abs=1e-12)
        assert result.grad_norm == pytest.approx(results[0].grad_norm, rel=1e-9)
        for name in weight:
            torch.testing.assert_close(weight[name], weights[0][name])
    assert results[0].tokens == sum(2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"]) - 2
                                    for p in data.raw)


@pytest.mark.parametrize("overrides", [{}, {"sliding_window": 4, "final_logit_softcapping": 30.0}],
                         ids=["plain", "windows_softcap"])
def test_packed_pairs_have_the_log_probabilities_of_unpacked_ones(overrides):
    """collate_packed: the micro-batch's sequences share rows no longer than its longest; each keeps its
    log-probabilities (windows shorter than the rows, softcapped logits)."""
    model = make_model(**overrides)
    data = PreferenceSet(pairs(6), max_seq_length=64, source="train.pt", vocab_size=256)
    indices = [0, 2, 3, 5]
    plain = answer_logps(model, *data.collate(indices, torch.device("cpu")))
    input_ids, targets, mask, segments, sequence = data.collate_packed(indices, torch.device("cpu"))
    assert input_ids.shape[0] < 2 * len(indices) and input_ids.shape[1] == max(data.lengths[i] for i in indices)
    assert sorted(set(sequence[sequence >= 0].tolist())) == list(range(2 * len(indices)))
    packed = answer_logps(model, input_ids, targets, mask, segments, sequence)
    for a, b in zip(packed, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_a_packed_step_is_the_unpacked_step_with_less_padding():
    data = PreferenceSet(pairs(6), max_seq_length=64, source="train.pt", vocab_size=256)
    objective = PreferenceObjective(PreferenceArgs(loss="dpo"), lora=True)
    results, weights = [], []
    for packing in (None, object()):  # the step packs when the loop hands it a packing plan
        model = make_model(seed=0, lora=True)
        optimizer = make_optimizer(model, 1e-2, 0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        # micro-batches [5, 0, 1] and [4, 2, 3]: sequences of 6 to 16 tokens, some of which share a row
        results.append(objective.train_step(OneProcess(), model, optimizer, scheduler, data, [5, 0, 1, 4, 2, 3],
                                            accum=2, seed=0, step=0, grad_clip=None, precision="64-true",
                                            packing=packing))
        weights.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    plain, packed = results
    assert packed.loss == pytest.approx(plain.loss, abs=1e-12)
    assert packed.metrics == pytest.approx(plain.metrics, abs=1e-12)
    assert packed.grad_norm == pytest.approx(plain.grad_norm, rel=1e-9)
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name])
    assert packed.tokens == plain.tokens and packed.padded_tokens < plain.padded_tokens


def test_long_pairs_are_cut_and_bad_pairs_refused():
    raw = pairs(3)
    raw[1]["chosen_mask"][:] = False  # nothing trained on one side: the pair is dropped
    data = PreferenceSet(raw, max_seq_length=7, source="train.pt", vocab_size=256)
    # each has a side of more than 8 tokens (7 inputs): cut to 8, the answer's first trained tokens kept
    assert len(data) == 2 and data.dropped == 1 and data.truncated == 3
    assert max(data.lengths) == 7
    with pytest.raises(UserError, match=r"train.pt pair 0: needs 1-D tensors .*prepare_preferences.py"):
        PreferenceSet([{"prompt_ids": [1, 2]}], max_seq_length=7, source="train.pt", vocab_size=256)
    with pytest.raises(UserError, match="outside the model's vocabulary of 100"):
        PreferenceSet(pairs(1), max_seq_length=64, source="train.pt", vocab_size=100)
