"""scripts/dev/benchmark.py: the harness end to end on a tiny model, and its one-line errors."""

import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from helpers import tiny_config

pytestmark = pytest.mark.slow  # the benchmark harness in real processes


def test_benchmark_script_runs_our_step(tmp_path, root_dir, shared_dir):
    """The harness end to end on a 2-layer model: real Dolly lengths, JSON with throughput, memory and MFU; the
    A/B of lit_gpt.layers' lean backward passes against plain autograd (same steps, the same first loss)."""
    config = tiny_config(vocab_size=512, block_size=256, n_embd=64, intermediate_size=128)
    config.save(tmp_path / "lit_config.json")
    cmd = [sys.executable, str(root_dir / "scripts" / "dev" / "benchmark.py"), "--model", str(tmp_path / "lit_config.json"),
           "--method", "lora", "--precision", "32-true", "--dataset", "dolly", "--max_examples", "200",
           "--max_seq_length", "128", "--micro_batch_size", "4", "--batch_size", "8", "--steps_per_run", "2",
           "--warmup_steps", "1", "--runs", "2", "--threads", "1", "--compare_autograd_layers", "true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    ours = report["ours"]
    assert ours["tokens_per_s"] >= ours["non_padding_tokens_per_s"] > 0
    assert ours["peak_memory_gb"] > 0 and report["machine"]["matmul_tflops"] > 0 and 0 < ours["mfu"]
    assert len(ours["run_seconds"]) == 2
    r, d, kv = 8, 64, 2 * 16  # LoRA r=8 on q (64 -> 64) and v (64 -> 2 groups x 16) in each of 2 layers
    assert ours["trainable_parameters"] == 2 * ((r * d + d * r) + (r * d + kv * r))
    data = report["data"]
    assert 0 < data["non_padding_share_epoch_plain_batching"] < data["non_padding_share_epoch_loop_batching"] <= 1
    assert data["prepare_seconds"] > 0 and report["setting"]["method"] == "lora"
    baseline, ab = report["ours_autograd_layers"], report["lean_layers_vs_autograd"]
    assert baseline["first_step_losses"][0] == ours["first_step_losses"][0]  # the forward math is the same
    assert len(ab["speedups_paired"]) == 2 and ab["speedup_paired_median"] > 0 and ab["peak_memory_ratio"] > 0


def test_benchmark_script_packs_profiles_and_reports_the_memory_ceiling(tmp_path, root_dir, shared_dir):
    """--packing: ours trains packed rows of real Alpaca lengths (the same examples as the loop's length grouping,
    in fewer passes); --profile: each side's top operators; the memory ceiling and the weight-traffic floor."""
    config = tiny_config(vocab_size=512, block_size=256, n_embd=64, intermediate_size=128)
    config.save(tmp_path / "lit_config.json")
    base = [sys.executable, str(root_dir / "scripts" / "dev" / "benchmark.py"), "--model", str(tmp_path / "lit_config.json"),
            "--precision", "32-true", "--dataset", "alpaca", "--max_examples", "64", "--max_seq_length", "256",
            "--micro_batch_size", "2", "--batch_size", "16", "--steps_per_run", "0", "--warmup_steps", "1",
            "--runs", "1", "--threads", "1"]
    reports = {}
    for packing in ("false", "true"):
        proc = subprocess.run(base + ["--packing", packing, "--profile", packing], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports[packing] = json.loads(proc.stdout)
    packed, grouped = reports["true"], reports["false"]
    assert packed["setting"]["packing"] is True and packed["data"]["packing"] is True
    # the same examples: the same real tokens in fewer, fuller passes when packed
    assert packed["data"]["timed_real_tokens_per_run"] == grouped["data"]["timed_real_tokens_per_run"]
    assert packed["data"]["timed_passes_ours"] < grouped["data"]["timed_passes_ours"]
    ours = packed["ours"]
    assert ours["profile_top_ops"] and all(ms >= 0 and 0 <= share <= 1 for _, ms, share in ours["profile_top_ops"])
    assert grouped["ours"]["profile_top_ops"] is None
    assert packed["machine"]["memory_gbps"] > 0 and 0 < ours["weight_read_gbps_floor"]
    assert 0 < ours["weight_read_share_of_bandwidth"] < 1


def test_benchmark_script_user_errors(tmp_path, root_dir):
    cmd = [sys.executable, str(root_dir / "scripts" / "dev" / "benchmark.py"), "--compare_litgpt", "true",
           "--litgpt_python", str(tmp_path / "nowhere" / "python")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "nowhere" in proc.stderr and "pip install" in proc.stderr


def test_generation_benchmark_runs_ours_and_transformers(tiny_checkpoint_dir, capsys):
    """scripts/dev/benchmark_generate.py on a tiny checkpoint: both implementations produce every token, JSON report."""
    import pytest

    pytest.importorskip("transformers")
    from helpers import load_cached_script

    checkpoint = tiny_checkpoint_dir("smollm2", weights=True, block_size=512)
    report = load_cached_script("dev/benchmark_generate").main(
        checkpoint_dir=checkpoint, batch_sizes="1 2", num_prompts=3, batch1_prompts=2, max_new_tokens=3, runs=1,
        threads=1)
    assert [r["batch_size"] for r in report["results"]] == [1, 2]
    for row in report["results"]:
        assert row["ours_tokens_per_s"] > 0 and row["transformers_tokens_per_s"] > 0
        assert row["new_tokens"] == row["prompts"] * 3
    assert json.loads(capsys.readouterr().out)["results"] == report["results"]


def test_generation_benchmark_times_the_compiled_decode_beside_the_eager_one(tiny_checkpoint_dir):
    from helpers import load_cached_script

    checkpoint = tiny_checkpoint_dir("smollm2", weights=True, block_size=512)
    report = load_cached_script("dev/benchmark_generate").main(
        checkpoint_dir=checkpoint, batch_sizes="1", num_prompts=2, batch1_prompts=2, max_new_tokens=3, runs=2,
        threads=1, compare_transformers=False, compare_compiled=True)
    row = report["results"][0]
    assert row["ours_tokens_per_s"] > 0 and row["ours_compiled_tokens_per_s"] > 0
    assert row["ours_vs_ours_compiled"] == round(row["ours_tokens_per_s"] / row["ours_compiled_tokens_per_s"], 2)


def test_generation_benchmark_ifeval_workload_quick(tiny_checkpoint_dir, capsys):
    """--workload ifeval on 3 prompts, 4 tokens each: ours (continuous batching, 2 rows), transformers' static
    batches and lm-eval's hf backend answer the same prompts identically (greedy, float32); scores, speeds in JSON."""
    import pytest

    pytest.importorskip("transformers")
    pytest.importorskip("lm_eval")
    from helpers import load_cached_script

    checkpoint = tiny_checkpoint_dir("smollm2", weights=True, block_size=512)
    report = load_cached_script("dev/benchmark_generate").main(
        checkpoint_dir=checkpoint, workload="ifeval", limit=3, max_new_tokens=4, batch_size=2, hf_batch_sizes="1 2",
        threads=1)
    assert report["prompts"] == 3 and report["max_new_tokens"] == 4
    ours, hf, lm_eval = report["ours"], report["transformers"], report["lm_eval_hf"]
    assert 0 < ours["new_tokens"] <= 12 and ours["tokens_per_s"] > 0
    assert 0 <= ours["ifeval"]["prompt_level_strict_acc"] <= 1
    assert [r["batch_size"] for r in hf["runs"]] == [1, 2] and hf["best"] in hf["runs"] and hf["ours_speedup"] > 0
    assert all(r["same_answers_as_ours"] == 1.0 and r["new_tokens"] == ours["new_tokens"] for r in hf["runs"])
    assert lm_eval["same_prompts_as_ours"] == lm_eval["same_answers_as_ours"] == 1.0
    assert lm_eval["ifeval"] == ours["ifeval"]
    assert json.loads(capsys.readouterr().out)["ours"] == ours


def test_generation_benchmark_times_llama_cpp_beside_ours_at_batch_1(tiny_checkpoint_dir, tmp_path, capsys,
                                                                    root_dir):
    """--llama_bench: batch 1 runs llama.cpp's llama-bench (here a stand-in that records what it was given) on a GGUF
    of the same weights, one repetition per run, interleaved with ours; its tokens/s and the ratio are reported, the
    GGUF is removed after. A --config file may not name the program."""
    from helpers import run_as_main

    checkpoint = tiny_checkpoint_dir("smollm2", weights=True, block_size=512)
    seen, program = tmp_path / "seen.txt", tmp_path / "llama-bench"
    program.write_text(f"#!/bin/sh\necho \"$@\" >> {seen}\nhead -c 4 \"$2\" >> {seen}\necho >> {seen}\n"
                       "echo '[{\"avg_ts\": 40.0, \"n_gen\": 3}]'\n")
    program.chmod(0o755)
    script = root_dir / "scripts" / "dev" / "benchmark_generate.py"
    common = ["--checkpoint_dir", checkpoint, "--batch_sizes", "1", "--num_prompts", 2, "--batch1_prompts", 2,
              "--max_new_tokens", 3, "--runs", 2, "--threads", 1, "--compare_transformers", "false"]
    code, out, err = run_as_main(capsys, script, *common, "--llama_bench", program)
    assert code == 0, err
    row = json.loads(out)["results"][0]
    assert row["llama_cpp_tokens_per_s"] == 40.0 and row["ours_tokens_per_s"] > 0
    assert row["ours_vs_llama_cpp"] == round(row["ours_tokens_per_s"] / 40.0, 2)
    calls = seen.read_text().splitlines()
    assert len(calls) == 4 and calls[1] == calls[3] == "GGUF"  # two runs, each given a GGUF file
    gguf_file = Path(calls[0].split()[1])
    assert calls[0] == f"-m {gguf_file} -t 1 -p 0 -n 3 -r 1 -o json" and not gguf_file.parent.exists()

    program.write_text("#!/bin/sh\necho 'error: unknown model architecture' >&2\nexit 1\n")
    code, out, err = run_as_main(capsys, script, *common, "--llama_bench", program)
    assert code == 1 and "Traceback" not in err
    assert f"--llama_bench {program}: exit code 1, no result (error: unknown model architecture)" in err

    seen.unlink()
    program.write_text(f"#!/bin/sh\necho \"$@\" >> {seen}\n")
    config = tmp_path / "benchmark.yaml"
    config.write_text(f"llama_bench: {program}\n")
    code, out, err = run_as_main(capsys, script, *common, "--config", config)
    assert code == 1 and "Traceback" not in err and not seen.exists()
    assert f"--llama_bench {program}: names a program to run, so it is taken from the command line" in err


def test_generation_benchmark_user_errors(capsys):
    from helpers import assert_one_line_error, run_script

    code, _, err = run_script(capsys, "dev/benchmark_generate", "--workload", "real")
    assert_one_line_error(code, err, "--workload")
    code, _, err = run_script(capsys, "dev/benchmark_generate", "--workload", "ifeval", "--peers", "vllm")
    assert_one_line_error(code, err, "--peers vllm")
    code, _, err = run_script(capsys, "dev/benchmark_generate", "--workload", "ifeval", "--compare_lookup", "-1")
    assert_one_line_error(code, err, "--compare_lookup -1: must be 0")


def test_the_peer_interpreter_is_taken_from_the_command_line_only(tmp_path, root_dir):
    """--litgpt_python names a program the benchmark runs: a --config file must not choose it."""
    marker = tmp_path / "payload-ran"
    program = tmp_path / "python"
    program.write_text(f"#!/bin/sh\ntouch {marker}\n")
    program.chmod(0o755)
    config = tmp_path / "benchmark.yaml"
    config.write_text(f"compare_litgpt: true\nlitgpt_python: {program}\n")
    cmd = [sys.executable, str(root_dir / "scripts" / "dev" / "benchmark.py"), "--config", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"--litgpt_python {program}: names a program to run, so it is taken from the command line" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("baseline", ["sdpa_float32_cache", "all_rows", "float32_softmax"])
def test_attention_benchmark_times_both_paths_and_restores_the_library(tiny_checkpoint_dir, baseline):
    """scripts/dev/benchmark_attention.py on a tiny checkpoint: both paths timed on the same budgets (drawn between
    --min_new_tokens and --max_new_tokens), the same greedy answers (float32), the library's path put back."""
    from helpers import load_cached_script
    import lit_gpt.model as model_module
    from lit_gpt.infer.cache import RowCache

    originals = (model_module.grouped_attention, model_module.KV_CACHE_BLOCK_CPU, model_module.GPT.set_kv_cache,
                 model_module.rows_attending, RowCache._order_rows, RowCache.leave)
    checkpoint = tiny_checkpoint_dir("smollm2", weights=True, block_size=512)
    script = load_cached_script("dev/benchmark_attention")
    report = script.main(checkpoint_dir=checkpoint, num_prompts=2, max_new_tokens=3, batch_size=2, runs=2, threads=1,
                         baseline=baseline)
    assert list(report["seconds"]) == ["library", baseline]
    assert [len(v) for v in report["seconds"].values()] == [2, 2] and len(report["paired_speedup"]) == 2
    assert report["new_tokens"] == 6 and report["answers"] == 2
    drawn = script.main(checkpoint_dir=checkpoint, num_prompts=3, min_new_tokens=1, max_new_tokens=6, batch_size=2,
                        runs=1, threads=1, baseline=baseline, prompt_lookup=2)
    expected = torch.randint(1, 7, (3,), generator=torch.Generator().manual_seed(0)).tolist()
    assert drawn["new_tokens"] == sum(expected) and drawn["identical_answers"] == 3
    steps = script.main(checkpoint_dir=checkpoint, batch_size=3, runs=2, threads=1, baseline=baseline,
                        step_lengths="5,40", step_positions=3, profile_step=baseline == "float32_softmax")
    assert [len(ms) for ms in steps["ms_per_step"].values()] == [2, 2] and len(steps["paired_speedup"]) == 2
    if baseline == "float32_softmax":  # each path's step profiled: its matmuls among the operators
        for shares in steps["operator_shares"].values():
            assert 0 < sum(shares.values()) <= 100.1 and any(name in shares for name in ("aten::mm", "aten::bmm"))
        assert list(steps["operator_shares"]) == ["library", "float32_softmax"]
    assert script.spread_lengths("5,40", 3).tolist() == [40, 22, 5]
    assert (model_module.grouped_attention, model_module.KV_CACHE_BLOCK_CPU, model_module.GPT.set_kv_cache,
            model_module.rows_attending, RowCache._order_rows, RowCache.leave) == originals


def test_attention_benchmark_refuses_bad_step_lengths():
    from helpers import load_cached_script
    from lit_gpt.utils import UserError

    script = load_cached_script("dev/benchmark_attention")
    for bad in ("150", "x,5", "9,3", "0,4"):
        with pytest.raises(UserError, match=f"--step_lengths {bad}: give SHORTEST,LONGEST"):
            script.spread_lengths(bad, 4)
    with pytest.raises(UserError, match="--prompt_lookup -1: must be 0"):
        script.main(prompt_lookup=-1)


def test_reference_loss_benchmark_times_both_paths_and_restores_the_library(tiny_checkpoint_dir, shared_dir):
    """scripts/dev/benchmark_reference_loss.py on a tiny checkpoint: both paths timed on the same answers, the same
    NLLs (float32), the library's _answer_nll put back."""
    from helpers import load_cached_script
    import lit_gpt.eval.reference_loss as reference_module

    original = reference_module._answer_nll
    checkpoint = tiny_checkpoint_dir("smollm2", weights=True, block_size=512)
    report = load_cached_script("dev/benchmark_reference_loss").main(
        checkpoint_dir=checkpoint, reference_data=shared_dir / "datasets/alpaca_gpt4/sample_999.json", limit=5,
        batch_size=2, runs=2, threads=1, precision="32-true")
    assert [len(v) for v in report["seconds"].values()] == [2, 2] and report["answers"] == 5
    assert report["max_abs_difference_per_answer_mean_nll"] < 1e-4 and report["largest_logits_gb_replaced_path"] > 0
    assert reference_module._answer_nll is original


def test_reference_loss_benchmark_profile_counts_the_matmuls_work(tiny_checkpoint_dir, shared_dir):
    """--profile true: operator shares of one more profiled run and aten::mm's rate by the counted FLOPs (2 x the
    blocks' weights per padded position + the head per answer token)."""
    from helpers import load_cached_script
    import lit_gpt.eval.reference_loss as reference_module
    from lit_gpt.eval.run import reference_examples
    from lit_gpt.infer.load import load

    checkpoint = tiny_checkpoint_dir("smollm2", weights=True, block_size=512)
    script = load_cached_script("dev/benchmark_reference_loss")
    data = shared_dir / "datasets/alpaca_gpt4/sample_999.json"
    report = script.main(checkpoint_dir=checkpoint, reference_data=data, limit=3, batch_size=2, runs=1, threads=1,
                         precision="32-true", profile=True)["profile"]
    assert "aten::mm" in report["shares"] and 0 < sum(report["shares"].values()) <= 1.001
    assert report["mm_seconds"] > 0 and report["mm_tflops"] > 0
    loaded = load(checkpoint, device="cpu", precision="32-true")
    examples = reference_examples(data, loaded.tokenizer, loaded.style, 512, 3)
    model, config = loaded.model, loaded.model.config
    widths = [e["input_ids"].numel() - 1 for e in examples]
    padded = sum(len(r) * max(widths[i] for i in r) for r in reference_module.token_budget_batches(widths, 2))
    per_position = sum(l.weight.numel() for l in model.modules() if isinstance(l, torch.nn.Linear)) - (
        model.lm_head.weight.numel())
    answers = sum(int((e["labels"][1:] != -100).sum()) for e in examples)
    assert script.matmul_flops(examples, model, 2) == 2.0 * per_position * padded + 2.0 * config.n_embd * (
        config.vocab_size * answers)


def test_matvec_benchmark_reports_each_way_of_reading_the_weights(capsys):
    from helpers import load_cached_script

    report = load_cached_script("dev/benchmark_matvec").main(rows=64, cols=32, weights=3, runs=1, threads=1)
    ways = ["linear", "mv", "linear_via_float32", "float32_sum_read"]
    assert all(report[way] > 0 for way in ways) and report["shape"] == [64, 32]
    assert report.get("linear_prepacked_onednn", 1) > 0  # where PyTorch has the private operator
    assert json.loads(capsys.readouterr().out) == report


def test_dpo_benchmark_times_packed_and_unpacked_runs_of_the_same_steps(tiny_checkpoint_dir, tmp_path, capsys):
    """scripts/dev/benchmark_dpo.py on a tiny checkpoint and pairs of very different lengths: both paths run the
    same steps (the same final loss), the packed one with less padding."""
    from helpers import load_cached_script
    from lit_gpt.data.preferences import PREFERENCES
    from lit_gpt.data.prepare import prepare
    from lit_gpt.data.records import iter_records
    from lit_gpt.utils import UserError

    checkpoint = tiny_checkpoint_dir("smollm2", weights=True, block_size=256)
    rows = [{"prompt": f"Question {i}?", "chosen": "Yes. " * (1 + 7 * (i % 4)), "rejected": "No."} for i in range(16)]
    source = tmp_path / "pairs.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in rows))
    prepare(iter_records(source), name="pairs", source_files=[source], checkpoint_dir=checkpoint,
            destination_path=tmp_path / "pairs", test_split_fraction=0.25, example_format=PREFERENCES)
    script = load_cached_script("dev/benchmark_dpo")
    report = script.main(data_dir=tmp_path / "pairs", checkpoint_dir=checkpoint, max_iters=2, batch_size=4,
                         micro_batch_size=4, runs=2, threads=1)
    assert [len(v) for v in report["seconds"].values()] == [2, 2]
    losses = report["final_train_loss"]
    assert losses["packed"] == pytest.approx(losses["unpacked"], abs=1e-3)
    assert min(report["not_padding"]["packed"]) > max(report["not_padding"]["unpacked"])
    with pytest.raises(UserError, match="no prepared pairs"):
        script.main(data_dir=tmp_path / "nothing", checkpoint_dir=checkpoint)
