"""Preference-optimization losses as pure functions of sequence log-probabilities: DPO, IPO, SimPO and ORPO.

Each takes per-pair log-probabilities of the chosen and the rejected answer given the prompt (tensors of shape (B,))
and returns a `PreferenceLoss`: the per-pair losses (average them for the step) and the implicit rewards that runs
log (their difference, the margin, and how often it is positive, the accuracy). `sequence_logps` computes the
log-probabilities from a model's logits over the answer tokens (the masks of lit_gpt/data/preferences.py).

- DPO (Rafailov et al., 2023): -log sigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r))), summed log-probabilities,
  a frozen reference model; label_smoothing > 0 is the conservative DPO of Mitchell (2023).
- IPO (Azar et al., 2023): ((pi_c - pi_r) - (ref_c - ref_r) - 1 / (2 tau))^2, a squared loss that does not push the
  margin to infinity; TRL and the authors use length-averaged log-probabilities.
- SimPO (Meng et al., 2024): -log sigmoid(beta * (avg_c - avg_r) - gamma), length-averaged log-probabilities, no
  reference model, a target margin gamma.
- ORPO (Hong et al., 2024): NLL(chosen) - lambda * log sigmoid(log odds(chosen) - log odds(rejected)), where
  odds(y) = p / (1 - p) with p the length-averaged probability; no reference model, the SFT loss built in.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PreferenceLoss:
    losses: torch.Tensor  # (B,): the loss of each pair
    chosen_rewards: torch.Tensor  # (B,), detached
    rejected_rewards: torch.Tensor  # (B,), detached

    @property
    def loss(self) -> torch.Tensor:
        return self.losses.mean()

    @property
    def accuracy(self) -> torch.Tensor:
        """The share of pairs whose chosen answer has the higher reward."""
        return (self.chosen_rewards > self.rejected_rewards).float().mean()


def sequence_logps(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                   average: bool = False) -> torch.Tensor:
    """(B,) log-probability of each sequence's trained tokens: logits (B, T, V) predict targets (B, T) (already
    shifted: logits[:, t] predicts targets[:, t]); mask (B, T) is True on the answer tokens. `average` divides by
    their number (SimPO, ORPO, IPO). In float32 at least: bf16 log-softmax sums lose the small differences DPO
    compares."""
    logps = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    token_logps = torch.gather(logps, -1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    total = token_logps.sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


def _rewards(chosen: torch.Tensor, rejected: torch.Tensor, losses: torch.Tensor) -> PreferenceLoss:
    return PreferenceLoss(losses, chosen.detach(), rejected.detach())


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float = 0.1, label_smoothing: float = 0.0) -> PreferenceLoss:
    """DPO on summed log-probabilities; rewards beta * (policy - reference)."""
    logits = beta * ((policy_chosen - policy_rejected) - (reference_chosen - reference_rejected))
    losses = -F.logsigmoid(logits) * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing
    return _rewards(beta * (policy_chosen - reference_chosen), beta * (policy_rejected - reference_rejected), losses)


def ipo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, tau: float = 0.1) -> PreferenceLoss:
    """IPO: the log-ratio margin regressed onto 1 / (2 tau); rewards tau * (policy - reference)."""
    margin = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    losses = (margin - 1 / (2 * tau)) ** 2
    return _rewards(tau * (policy_chosen - reference_chosen), tau * (policy_rejected - reference_rejected), losses)


def simpo_loss(policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, beta: float = 2.0,
               gamma: float = 0.5) -> PreferenceLoss:
    """SimPO on length-averaged log-probabilities, margin gamma; rewards beta * average log-probability."""
    chosen, rejected = beta * policy_chosen_avg, beta * policy_rejected_avg
    return _rewards(chosen, rejected, -F.logsigmoid(chosen - rejected - gamma))


def orpo_loss(policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, chosen_nll: torch.Tensor,
              lam: float = 0.1) -> PreferenceLoss:
    """ORPO: the chosen answer's NLL (per pair) plus lam times the odds-ratio loss; rewards lam * average
    log-probability. log(1 - p) as log1p(-exp(log p)): exact for p near 0, where the averages are."""
    log_odds = (policy_chosen_avg - policy_rejected_avg) - (
        torch.log1p(-torch.exp(policy_chosen_avg)) - torch.log1p(-torch.exp(policy_rejected_avg)))
    losses = chosen_nll - lam * F.logsigmoid(log_odds)
    return _rewards(lam * policy_chosen_avg, lam * policy_rejected_avg, losses)
