"""lit_gpt/studies/pairwise.py: the judge's win rate with position-biased fake judges."""

from lit_gpt.studies.pairwise import PAIRWISE_PROMPT, pairwise_preference, win_rate


class FakeJudge:
    """Scores 1 ("response 1 is better") .. 2 ("response 2") by a rule on the two responses."""

    def __init__(self, rule):
        self.rule, self.requests = rule, []

    def score(self, examples):
        results = []
        for example in examples:
            first, second = example.output.split("\n\n[Response 2]\n")
            first = first.removeprefix("[Response 1]\n")
            self.requests.append(PAIRWISE_PROMPT.format(example.instruction, example.input, example.output))
            results.append({"score": self.rule(first, second)})
        return results


def test_win_rate_in_both_orders():
    prompts = [{"instruction": f"q{i}", "input": ""} for i in range(4)]
    baseline = ["short", "short", "a long answer", "x"]
    variant = ["a long answer", "a longer answer", "short", "x"]
    # a judge that always picks the first position: both orders cancel, every prompt is a tie
    biased = win_rate(pairwise_preference(FakeJudge(lambda a, b: 1.0), prompts, baseline, variant))
    assert (biased["wins"], biased["ties"], biased["losses"]) == (0, 4, 0) and biased["win_rate"] == 0.5
    assert biased["order_consistent"] == 0
    # a judge that prefers the longer answer wherever it stands
    judge = FakeJudge(lambda a, b: 2.0 if len(b) > len(a) else 1.0 if len(a) > len(b) else 1.5)
    fair = win_rate(pairwise_preference(judge, prompts, baseline, variant))
    assert (fair["wins"], fair["ties"], fair["losses"]) == (2, 1, 1) and fair["win_rate"] == 2.5 / 4
    assert len(judge.requests) == 8 and "[Instruction]\nq0" in judge.requests[0]
