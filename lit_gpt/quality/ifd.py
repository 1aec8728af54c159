"""Instruction-Following Difficulty (IFD, Li et al. 2023 "Cherry LLM"; Superfiltering showed a GPT-2-sized model is
enough): loss(response | prompt-formatted instruction) / loss(response alone). Near or above 1 the instruction does
not help predict the answer (noise or a mismatched pair); high values below 1 mark hard, informative examples.
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.quality.scored_records import ScoringExample, right_padded
from lit_gpt.utils import UserError

class IFDScorer:
    """Instruction-Following Difficulty: mean cross-entropy of the response tokens with the prompt-formatted
    instruction before them, divided by the same without it.

    Both losses average over exactly the same response tokens: the unconditioned sequence starts with the BOS token
    (or EOS, GPT-2's document separator, when there is no BOS) so its first response token is predicted too."""

    def __init__(self, model, tokenizer, style, max_seq_length: Optional[int] = None) -> None:
        self.model, self.tokenizer, self.style = model, tokenizer, style
        self.max_seq_length = min(max_seq_length or model.config.block_size, model.config.block_size)
        start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        if start is None:
            raise UserError(f"{tokenizer.checkpoint_dir}: the tokenizer has neither BOS nor EOS; IFD needs a token "
                            "to start the response-only sequence")
        self.start_ids = [start]
        self.pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0

    @property
    def settings(self) -> dict:
        return {"prompt_style": self.style.name, "max_seq_length": self.max_seq_length,
                "tokenizer": self.tokenizer.fingerprint}

    def sequences(self, example: ScoringExample) -> Optional[tuple[list[int], int, list[int], bool]]:
        """(conditioned ids, where the response starts in them, unconditioned ids, truncated) or None for an empty
        response. Long pairs keep the response's head and the prompt's tail (which holds the answer header)."""
        response = self.tokenizer.encode_ids(example.output)
        if not response:
            return None
        prompt = encode_prompt(self.tokenizer, self.style, example.instruction, example.input).tolist()
        max_len = self.max_seq_length
        truncated = len(prompt) + len(response) > max_len
        if truncated:
            response = response[:max(max_len - len(prompt), max_len // 2)]
            prompt = prompt[len(prompt) - (max_len - len(response)):]
        return prompt + response, len(prompt), self.start_ids + response, truncated

    def response_losses(self, sequences: list[tuple[list[int], int]]) -> list[float]:
        """Mean cross-entropy over the tokens from `start` on, for each (ids, start); one forward pass."""
        device = self.model.wte.weight.device
        idx = right_padded([ids for ids, _ in sequences], self.pad_id, device)
        predicts = torch.zeros_like(idx, dtype=torch.bool)  # position t predicts token t+1
        targets, counts = [], []
        for row, (ids, start) in enumerate(sequences):
            predicts[row, start - 1:len(ids) - 1] = True
            targets.extend(ids[start:])
            counts.append(len(ids) - start)
        logits = self.model(idx, output_mask=predicts)  # (sum of counts, vocab), row-major = targets' order
        losses = F.cross_entropy(logits.float(), torch.tensor(targets, device=device), reduction="none")
        return [chunk.mean().item() for chunk in losses.split(counts)]

    @torch.inference_mode()
    def score(self, examples: Sequence[ScoringExample]) -> list[dict]:
        built = [self.sequences(e) for e in examples]
        present = [b for b in built if b is not None]
        if present:
            conditioned = self.response_losses([(ids, start) for ids, start, _, _ in present])
            alone = self.response_losses([(ids, len(self.start_ids)) for _, _, ids, _ in present])
        results, k = [], 0
        for b in built:
            if b is None:
                results.append({"score": None, "reason": "empty_response"})
                continue
            ifd = conditioned[k] / alone[k] if alone[k] > 0 else None
            results.append({"score": None if ifd is None else round(ifd, 6), "loss_conditioned": round(conditioned[k], 6),
                            "loss_response": round(alone[k], 6), "truncated": b[3]})
            k += 1
        return results
