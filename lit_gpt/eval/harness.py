"""Our GPT (with LoRA merged or not) as an lm-eval harness language model, so any harness task runs on it.

lm-eval asks a model three things: the log-likelihood of a continuation given a context (multiple choice: ARC,
HellaSwag, MMLU), the rolling log-likelihood of a whole text (perplexity tasks), and greedy generation until a stop
string (GSM8K, ...). `LitGPTLM` answers them with our model and tokenizer, batched: continuations are scored from
one forward per micro-batch of similar-length requests, with the LM head run only where a continuation token is
predicted; generation goes through `lit_gpt.infer.answer.continue_batch`. Contexts are raw text, as lm-eval's own
Hugging Face model sees them by default (no chat template).

Tokenization follows lm-eval's HF model: the continuation's tokens are those of (context + continuation) after the
tokens of the context alone, with trailing spaces of the context moved to the continuation; BOS first when the
tokenizer uses one. Inputs longer than the model's context keep their last block_size tokens.
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM  # lm-eval imports a lot: lit_gpt.eval.run imports this module only for --tasks harness

from lit_gpt.infer.answer import continue_batch
from lit_gpt.model import GPT
from lit_gpt.tokenizer import Tokenizer


class LitGPTLM(LM):
    def __init__(self, model: GPT, tokenizer: Tokenizer, batch_size: int = 8, max_gen_toks: int = 256) -> None:
        super().__init__()
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_gen_toks = batch_size, max_gen_toks
        self.device_ = next(model.parameters()).device

    # ---- tokenization -------------------------------------------------------------------------------------------
    def _prefix(self) -> list:
        """BOS before every input, where the tokenizer adds one."""
        t = self.tokenizer
        return [t.bos_id] if t.use_bos and t.bos_id is not None else []

    def _start_token(self) -> int:
        """What an input with no context is conditioned on: BOS if the vocabulary has one, else EOS (lm-eval's
        HF model's `prefix_token_id`)."""
        t = self.tokenizer
        return t.bos_id if t.bos_id is not None else t.eos_id

    def _pair_ids(self, context: str, continuation: str) -> "tuple[list[int], list[int]]":
        spaces = len(context) - len(context.rstrip(" "))
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return [self._start_token()], self.tokenizer.encode_ids(continuation)
        whole = self.tokenizer.encode_ids(context + continuation)
        n_context = len(self.tokenizer.encode_ids(context))
        return self._prefix() + whole[:n_context], whole[n_context:]

    # ---- scoring --------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def score_pairs(self, pairs: Sequence["tuple[list[int], list[int]]"]) -> "list[tuple[float, bool]]":
        """(sum of the continuation's log-probabilities, whether greedy decoding would produce it) per
        (context ids, continuation ids)."""
        block = self.model.config.block_size
        sequences = [(context + continuation)[-(block + 1):] for context, continuation in pairs]
        n_scored = [min(len(c), len(s) - 1) for (_, c), s in zip(pairs, sequences)]
        results: list[Optional[tuple[float, bool]]] = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -len(sequences[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start: start + self.batch_size]
            width = max(len(sequences[i]) for i in rows) - 1
            x = torch.zeros(len(rows), width, dtype=torch.long, device=self.device_)
            y = torch.full((len(rows), width), -100, dtype=torch.long, device=self.device_)
            for r, i in enumerate(rows):
                seq, n = sequences[i], n_scored[i]
                x[r, :len(seq) - 1] = torch.tensor(seq[:-1])
                y[r, len(seq) - 1 - n: len(seq) - 1] = torch.tensor(seq[len(seq) - n:])
            scored = y != -100
            logits = self.model(x, output_mask=scored)  # (scored tokens, vocab), row by row
            logprobs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
            targets = y[scored]
            token_logprobs = logprobs.gather(1, targets[:, None]).squeeze(1).double()
            greedy = logprobs.argmax(dim=-1) == targets
            offset = 0
            for r, i in enumerate(rows):
                n = n_scored[i]
                results[i] = (float(token_logprobs[offset: offset + n].sum()), bool(greedy[offset: offset + n].all()))
                offset += n
        return results

    def loglikelihood(self, requests) -> "list[tuple[float, bool]]":
        return self.score_pairs([self._pair_ids(*request.args) for request in requests])

    def loglikelihood_rolling(self, requests) -> "list[float]":
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for request in requests:
            ids = self.tokenizer.encode_ids(request.args[0])
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                ids, prefix_token=self._start_token(), max_seq_len=self.model.config.block_size, context_len=1)]
            out.append(sum(score for score, _ in self.score_pairs(windows)))
        return out

    def generate_until(self, requests) -> "list[str]":
        by_settings: dict = {}
        for i, request in enumerate(requests):
            context, kwargs = request.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            key = (tuple(until), int(kwargs.get("max_gen_toks", self.max_gen_toks)),
                   float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0)
            by_settings.setdefault(key, []).append((i, context))
        out: list[Optional[str]] = [None] * len(requests)
        for (until, max_new, temperature), items in by_settings.items():
            prompts = [self.tokenizer.encode(context, device=self.device_) for _, context in items]
            answers = continue_batch(self.model, self.tokenizer, prompts, max_new, batch_size=self.batch_size,
                                     temperature=temperature, stop_strings=until)
            for (i, _), answer in zip(items, answers):
                out[i] = answer.text
        return out


def run_harness(model: GPT, tokenizer: Tokenizer, tasks: Sequence[str], limit: Optional[int] = None,
                batch_size: int = 8, num_fewshot: Optional[int] = None, include_path: Optional[str] = None) -> dict:
    """lm-eval's `simple_evaluate` of `tasks` on our model: {task: {metric: value}} (lm-eval's metric names, e.g.
    "acc,none"). include_path: a folder of task YAML files of one's own (tasks on local files run offline)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    results = lm_eval.simple_evaluate(model=LitGPTLM(model, tokenizer, batch_size=batch_size), tasks=list(tasks),
                                      limit=limit, num_fewshot=num_fewshot, task_manager=manager,
                                      log_samples=False, bootstrap_iters=0)
    return {task: {k: v for k, v in metrics.items() if k != "alias"}
            for task, metrics in results["results"].items()}
