"""lit_gpt/eval/held_out.py: the eval-file layouts of the shared eval sets (Self-Instruct, Vicuna, MT-bench)."""

from lit_gpt.eval.held_out import eval_rows


def test_eval_file_layouts(shared_dir):
    eval_dir = shared_dir / "datasets" / "eval"
    sinstruct = eval_rows(eval_dir / "sinstruct_test_set.jsonl")
    assert len(sinstruct) == 252 and all(r["instruction"] and r["output"] for r in sinstruct)
    assert any(r["input"] for r in sinstruct)
    vicuna = eval_rows(eval_dir / "vicuna_test_set.jsonl")
    assert len(vicuna) == 80 and vicuna[0] == {"instruction": "How can I improve my time management skills?",
                                                "input": "", "output": None}
    mt_bench = eval_rows(eval_dir / "mt_bench_questions.jsonl")
    assert len(mt_bench) == 80 and mt_bench[0]["instruction"].startswith("Compose an engaging travel blog post")
