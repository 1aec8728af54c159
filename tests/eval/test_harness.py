"""lit_gpt/eval/harness.py: our GPT as an lm-eval language model; loglikelihoods are our model's own log-probs,
and a harness task defined on a local file runs offline through lm-eval's own evaluator."""

import json

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_config
from lit_gpt.model import GPT
from lit_gpt.tokenizer import Tokenizer

pytest.importorskip("lm_eval")
from lit_gpt.eval.harness import LitGPTLM, run_harness  # noqa: E402

pytestmark = pytest.mark.slow  # lm-eval's harness


class Request:  # what lm-eval hands a model: .args
    def __init__(self, *args):
        self.args = args


@pytest.fixture(scope="module")
def lm(tiny_checkpoint_dir):
    checkpoint = tiny_checkpoint_dir("smollm2")
    tokenizer = Tokenizer(checkpoint)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tokenizer.vocab_size, block_size=64)).double().eval()
    return LitGPTLM(model, tokenizer, batch_size=2)


@torch.no_grad()
def own_logprob(lm, context_ids, continuation_ids):
    ids = torch.tensor(context_ids + continuation_ids)
    logp = F.log_softmax(lm.model(ids[None, :-1])[0].double(), dim=-1)
    positions = range(len(context_ids) - 1, len(ids) - 1)
    total = sum(float(logp[t, ids[t + 1]]) for t in positions)
    greedy = all(int(logp[t].argmax()) == int(ids[t + 1]) for t in positions)
    return total, greedy


def test_loglikelihood_is_the_models_own_log_probability(lm):
    requests = [Request("The capital of France is", " Paris"), Request("Q: 2+2?\nA:", " 4"),
                Request("A long context " * 3, "and more words here"), Request("", "Hello")]
    results = lm.loglikelihood(requests)  # batches of 2, different lengths
    for request, (logprob, greedy) in zip(requests, results):
        context_ids, continuation_ids = lm._pair_ids(*request.args)
        assert continuation_ids and context_ids
        expected, expected_greedy = own_logprob(lm, context_ids, continuation_ids)
        assert logprob == pytest.approx(expected, rel=1e-9) and greedy == expected_greedy
    # trailing spaces of the context belong to the continuation, as in lm-eval's HF model
    assert lm._pair_ids("The capital is ", "Paris") == lm._pair_ids("The capital is", " Paris")


def test_rolling_loglikelihood_covers_every_token_once(lm):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    text = "one two three four five six seven eight nine ten " * 20  # over twice the 64-token context
    ids = lm.tokenizer.encode_ids(text)
    assert len(ids) > 2 * 64
    (total,) = lm.loglikelihood_rolling([Request(text)])
    windows = [make_disjoint_window(w) for w in get_rolling_token_windows(ids, lm.tokenizer.bos_id, 64, 1)]
    assert sum(len(predicted) for _, predicted in windows) == len(ids)  # each token predicted once, the first from BOS
    assert total == pytest.approx(sum(own_logprob(lm, c, p)[0] for c, p in windows), rel=1e-9)


def test_a_local_file_task_runs_offline_through_lm_eval(lm, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [{"country": c, "choices": [" Paris", " Rome", " Madrid"], "answer": i}
            for c, i in (("France", 0), ("Italy", 1), ("Spain", 2), ("Gaul", 0))]
    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "capitals_mc.yaml").write_text(f"""task: capitals_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: What is the capital of {{{{country}}}}?\\nA:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
""")
    (tmp_path / "capitals_gen.yaml").write_text(f"""task: capitals_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Q: What is the capital of {{{{country}}}}?\\nA:"
doc_to_target: "{{{{choices[answer]}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
metric_list:
  - metric: exact_match
""")
    results = run_harness(lm.model, lm.tokenizer, ["capitals_mc", "capitals_gen"], include_path=str(tmp_path),
                          batch_size=2)
    # multiple choice: accuracy of picking the highest-likelihood choice, recomputed by hand
    picks = []
    for row in rows:
        context = f"Q: What is the capital of {row['country']}?\nA:"
        scores = [lm.loglikelihood([Request(context, c)])[0][0] for c in row["choices"]]
        picks.append(int(max(range(3), key=scores.__getitem__) == row["answer"]))
    assert results["capitals_mc"]["acc,none"] == pytest.approx(sum(picks) / len(picks))
    assert 0.0 <= results["capitals_gen"]["exact_match,none"] <= 1.0
