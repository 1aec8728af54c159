"""Evaluation: IFEval, reference-answer loss, the lm-eval harness, paired comparisons."""
