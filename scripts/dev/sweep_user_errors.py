"""Developer check: 117 user mistakes run against a checkout, each outcome classified.

    python scripts/dev/sweep_user_errors.py [--repo OTHER_CHECKOUT] [--out results.json] [--only NAME_REGEX]

Every case is a real command line (finetune, prepare, score, filter, generate, convert, merge, inspect, mix) with one
mistake in it: a value that cannot be meant, a path of the wrong kind, an output that is an input, a full or
read-only disk (small tmpfs mounts: needs root), a crafted train_state.pth; and what nothing may do unasked
(`guard_cases`): a study recipe running more than the dataset tools, a --config file naming a program to run, an
output onto an input, two runs in one directory, LoRA weights on another base's weights; and secrets and crafted
files (`secret_and_crafted_cases`): a token on the command line, in a file to upload, sizes that would allocate
without end, JSON nested without end, train/test overlap; and (scripts/dev/sweep_crafted_cases.py) crafted GGUF
files, recipes that leave their box or carry a token, JSON of pathological shapes in each file the tools read.
Outcomes: `hang` (still running after 10 minutes), `leaked` (the token in any output), `clear error` (exit != 0,
the last line "error: ..." naming what to fix, no traceback), `handled` (it works, or warns where that is the right
answer), `unclear error` (an error that names the wrong flag or fix), `silent` (exit 0 for a mistake),
`traceback`, `damaged` (an input file changed, or a crafted payload ran). Run it on an older checkout with --repo to
compare (the checkpoint and data are built with this checkout's code; the formats are the same). About 9 minutes on 2
cores; --only runs the cases whose name a regular expression finds (the inputs, about a minute, are built anyway).
"""
import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import re
from pathlib import Path

from sweep_crafted_cases import gguf_cases, json_shape_cases, recipe_cases, recipe_command  # beside this script

HERE = Path(__file__).resolve().parents[2]


def test_helpers():
    """tests/helpers.py of this checkout, loaded by path (the test suite's tiny-checkpoint builder)."""
    spec = importlib.util.spec_from_file_location("sweep_test_helpers", HERE / "tests" / "helpers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HANG_SECONDS = 600  # a case still running after this long is a hang (its returncode None)


def python_runner(repo: Path, default_env: dict, timeout: float = HANG_SECONDS):
    """run(*argv, env=None, cwd=None): `python argv...` in the checkout (default), its output captured; a command
    that runs past `timeout` is stopped and comes back with returncode None."""
    def run(*argv, env=None, cwd=None):
        argv = [sys.executable, *map(str, argv)]
        try:
            return subprocess.run(argv, cwd=cwd or repo, capture_output=True, text=True, timeout=timeout,
                                  env=env or default_env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            text = [s.decode(errors="replace") if isinstance(s, bytes) else (s or "") for s in (e.stdout, e.stderr)]
            return subprocess.CompletedProcess(argv, None, *text)
    return run


def digest(paths) -> dict:
    """path -> the sha256 of each of its files (a folder's, sorted): an input changed by a run shows here."""
    out = {}
    for p in paths:
        p = Path(p)
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []
        out[str(p)] = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    return out


def full_disk(W: Path) -> Path:
    """A 1 MB tmpfs under W, filled up (needs root)."""
    d = W / f"full{time.time_ns()}"; d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], check=True)
    with open(d / "filler", "wb", buffering=0) as f:
        try:
            while True: f.write(b"\0" * 4096)
        except OSError: pass
    return d


def read_only(W: Path) -> Path:
    """A read-only tmpfs under W (needs root)."""
    d = W / f"ro{time.time_ns()}"; d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(d)], check=True)
    return d


def make_inputs(W: Path, CK: Path, SHARED: Path, run) -> dict:
    """What the cases run on, made with this checkout's code: prepared data (with and without a test split), a LoRA
    run and its merged checkpoint, broken configs, an HF folder (and one with a bad config.json), scored and flagged
    rows, a crafted train_state.pth whose payload would touch the returned `marker`."""
    PY = sys.executable
    rows = json.loads((SHARED / "datasets/alpaca/alpaca_random_9k.json").read_text())[:40]
    (W / "alpaca.json").write_text(json.dumps(rows))
    p = run("scripts/prepare_alpaca.py", "--checkpoint_dir", CK, "--data_path", W / "alpaca.json", "--destination_path",
            W / "data", "--max_seq_length", 128)
    assert p.returncode == 0, p.stderr
    NOTEST = W / "data_notest"
    p = run("scripts/prepare_alpaca.py", "--checkpoint_dir", CK, "--data_path", W / "alpaca.json", "--destination_path",
            NOTEST, "--max_seq_length", 128, "--test_split_fraction", 0)
    assert p.returncode == 0, p.stderr
    FT = ["finetune/lora.py", "--checkpoint_dir", CK, "--data_dir", W / "data", "--max_iters", 1, "--batch_size", 4,
          "--micro_batch_size", 4, "--eval_iters", 1, "--sample_max_new_tokens", 0]
    (W / "afile").write_text("x")
    # a LoRA run to merge / convert / resume from
    p = run(*FT, "--out_dir", W / "lora_run", "--save_interval", 1)
    assert p.returncode == 0, p.stderr
    LORA = W / "lora_run" / "lit_model.pth.lora"
    p = run("scripts/merge_lora.py", "--lora_path", LORA, "--out_dir", W / "merged")
    assert p.returncode == 0, p.stderr
    bad_config = W / "bad_config"; shutil.copytree(CK, bad_config)
    cfg = json.loads((bad_config / "lit_config.json").read_text()); cfg["n_layer"] = "two"
    (bad_config / "lit_config.json").write_text(json.dumps(cfg))
    no_embd = W / "no_embd"; shutil.copytree(CK, no_embd)
    cfg = json.loads((no_embd / "lit_config.json").read_text()); cfg.pop("n_embd")
    (no_embd / "lit_config.json").write_text(json.dumps(cfg))
    hf_dir = W / "hf"; p = run("scripts/convert_lit_checkpoint.py", "--checkpoint_dir", W / "merged", "--output_dir", hf_dir)
    assert p.returncode == 0, p.stderr
    (hf_dir / "lit_model.pth").unlink(missing_ok=True)
    hf_bad = W / "hf_bad"; shutil.copytree(hf_dir, hf_bad)
    c = json.loads((hf_bad / "config.json").read_text()); c["hidden_size"] = "32"; (hf_bad / "config.json").write_text(json.dumps(c))
    scored = W / "scored.json"
    p = run("scripts/score_dataset.py", "--data_path", W / "alpaca.json", "--method", "heuristics", "--output", scored)
    assert p.returncode == 0, p.stderr
    flagged = W / "flagged.json"
    flagged.write_text(json.dumps([{**r, "heuristics_pass": 0, "heuristics_flags": ["refusal"]} for r in rows]))
    qa = W / "qa.jsonl"; qa.write_text('{"question": "q1", "answer": "a1"}\n{"question": "q2", "answer": "a2"}\n' * 10)
    crafted_dir = W / "crafted"; shutil.copytree(W / "lora_run", crafted_dir)
    marker = W / "payload-ran"
    state = sorted(crafted_dir.glob("checkpoints/step-*/train_state.pth"))[-1]
    subprocess.run([PY, "-c", f"import os, torch\nclass P:\n    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
                    f"torch.save({{'model': {{}}, 'progress': P(), 'train_state': P()}}, {str(state)!r})"], check=True)
    return dict(CK=CK, NOTEST=NOTEST, FT=FT, LORA=LORA, bad_config=bad_config, no_embd=no_embd, hf_dir=hf_dir,
                hf_bad=hf_bad, scored=scored, flagged=flagged, qa=qa, crafted_dir=crafted_dir, marker=marker)


def user_error_cases(W: Path, inputs: dict) -> list:
    """(name, expected ("error", "error:FRAGMENT", "warn" or "ok"), argv (a list, or a callable making one), inputs
    that must stay byte-identical, extra environment) for each case."""
    CK, NOTEST, FT, LORA, qa, scored, flagged, hf_dir, hf_bad, bad_config, no_embd, crafted_dir = (
        inputs[k] for k in ("CK", "NOTEST", "FT", "LORA", "qa", "scored", "flagged", "hf_dir", "hf_bad", "bad_config",
                            "no_embd", "crafted_dir"))
    return [
        ("finetune --grad_clip -1", "error", [*FT, "--grad_clip", -1, "--out_dir", W / "o1"], [], None),
        ("finetune --lora_alpha 0", "error", [*FT, "--lora_alpha", 0, "--out_dir", W / "o2"], [], None),
        ("finetune --precision 16-mixed on CPU", "error", [*FT, "--precision", "16-mixed", "--out_dir", W / "o3"], [], None),
        ("finetune --out_dir is a file", "error", [*FT, "--out_dir", W / "afile"], [W / "afile"], None),
        ("finetune --learning_rate 0", "error", [*FT, "--learning_rate", 0, "--out_dir", W / "o4"], [], None),
        ("finetune --batch_size not a multiple", "error", [*FT, "--batch_size", 6, "--out_dir", W / "o5"], [], None),
        ("finetune --order sideways", "error", [*FT, "--order", "sideways", "--out_dir", W / "o6"], [], None),
        ("finetune lit_config n_layer 'two'", "error", ["finetune/lora.py", "--checkpoint_dir", bad_config, "--data_dir", W / "data", "--out_dir", W / "o7"], [bad_config], None),
        ("finetune lit_config without n_embd", "error", ["finetune/lora.py", "--checkpoint_dir", no_embd, "--data_dir", W / "data", "--out_dir", W / "o8"], [no_embd], None),
        ("finetune early stopping without a test split", "warn", ["finetune/lora.py", "--checkpoint_dir", CK, "--data_dir", NOTEST, "--max_iters", 1, "--batch_size", 4, "--micro_batch_size", 4, "--early_stopping_patience", 2, "--out_dir", W / "o9"], [], None),
        ("finetune resume from a crafted train_state.pth", "error", [*FT, "--out_dir", crafted_dir, "--resume", "auto"], [], {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
        ("finetune onto a full disk", "error", lambda: [*FT, "--out_dir", full_disk(W) / "run"], [], None),
        ("finetune into a read-only folder", "error", lambda: [*FT, "--out_dir", read_only(W) / "run"], [], None),
        ("prepare_json --columns naming a missing field", "error", ["scripts/prepare_json.py", "--data_path", qa, "--checkpoint_dir", CK, "--columns", '{"instruction": "question", "output": "answer", "input": "contxt"}', "--destination_path", W / "p1"], [qa], None),
        ("prepare_json --data_path missing", "error", ["scripts/prepare_json.py", "--data_path", W / "nope.json", "--checkpoint_dir", CK, "--destination_path", W / "p2"], [], None),
        ("prepare_json --destination_path is a file", "error", ["scripts/prepare_json.py", "--data_path", qa, "--checkpoint_dir", CK, "--columns", '{"instruction": "question", "output": "answer"}', "--destination_path", W / "afile"], [W / "afile", qa], None),
        ("prepare_json --test_split_fraction 1.5", "error", ["scripts/prepare_json.py", "--data_path", qa, "--checkpoint_dir", CK, "--columns", '{"instruction": "question", "output": "answer"}', "--test_split_fraction", 1.5, "--destination_path", W / "p3"], [], None),
        ("prepare_csv --csv_dir missing (flag named)", "error:--csv_dir", ["scripts/prepare_csv.py", "--csv_dir", W / "nope.csv", "--checkpoint_dir", CK, "--destination_path", W / "p4"], [], None),
        ("prepare onto a full disk", "error", lambda: ["scripts/prepare_alpaca.py", "--checkpoint_dir", CK, "--data_path", W / "alpaca.json", "--destination_path", full_disk(W) / "d"], [], None),
        ("prepare into a read-only folder", "error", lambda: ["scripts/prepare_alpaca.py", "--checkpoint_dir", CK, "--data_path", W / "alpaca.json", "--destination_path", read_only(W) / "d"], [], None),
        ("score_dataset --output equal to --data_path", "error", ["scripts/score_dataset.py", "--data_path", W / "alpaca.json", "--method", "heuristics", "--output", W / "alpaca.json"], [W / "alpaca.json"], None),
        ("score_dataset --limit -1", "error", ["scripts/score_dataset.py", "--data_path", W / "alpaca.json", "--method", "heuristics", "--limit", -1, "--output", W / "s2.json"], [W / "alpaca.json"], None),
        ("score_dataset --data_path missing", "error", ["scripts/score_dataset.py", "--data_path", W / "nope.json", "--method", "heuristics"], [], None),
        ("filter_dataset --output equal to --scores", "error", ["scripts/filter_dataset.py", "--scores", scored, "--method", "heuristics", "--output", scored], [scored], None),
        ("filter_dataset keeping no row", "error", ["scripts/filter_dataset.py", "--scores", flagged, "--method", "heuristics", "--output", W / "kept.json"], [flagged], None),
        ("filter_dataset --top_fraction 2", "error", ["scripts/filter_dataset.py", "--scores", scored, "--method", "heuristics", "--top_fraction", 2], [scored], None),
        ("generate/base.py --device cuda:7", "error", ["generate/base.py", "--checkpoint_dir", CK, "--device", "cuda:7"], [], None),
        ("generate/base.py --temperature -1", "error", ["generate/base.py", "--checkpoint_dir", CK, "--temperature", -1], [], None),
        ("generate/base.py --max_new_tokens 0", "error", ["generate/base.py", "--checkpoint_dir", CK, "--max_new_tokens", 0], [], None),
        ("generate/base.py --checkpoint_dir missing", "error", ["generate/base.py", "--checkpoint_dir", W / "nope"], [], None),
        ("generate/lora.py on a step checkpoint", "ok", ["generate/lora.py", "--lora_path", sorted((W / "lora_run").glob("checkpoints/step-*"))[-1], "--max_new_tokens", 2], [], None),
        ("convert_hf --model_name unknown", "error", ["scripts/convert_hf_checkpoint.py", "--checkpoint_dir", hf_dir, "--model_name", "no-such-model"], [], None),
        ("convert_hf config hidden_size '32'", "error", ["scripts/convert_hf_checkpoint.py", "--checkpoint_dir", hf_bad], [hf_bad / "config.json"], None),
        ("convert_hf --checkpoint_dir is a file", "error", ["scripts/convert_hf_checkpoint.py", "--checkpoint_dir", W / "afile"], [W / "afile"], None),
        ("convert_gguf --checkpoint_dir is a file", "error", ["scripts/convert_gguf_checkpoint.py", "--gguf_path", W / "afile", "--checkpoint_dir", W / "afile"], [W / "afile"], None),
        ("convert_lit on a LoRA run (hint: merge)", "error:merge", ["scripts/convert_lit_checkpoint.py", "--checkpoint_dir", W / "lora_run", "--output_dir", W / "hf2"], [], None),
        ("merge_lora into its own merged checkpoint", "error", ["scripts/merge_lora.py", "--lora_path", LORA, "--checkpoint_dir", W / "merged", "--out_dir", W / "merged2"], [W / "merged"], None),
        ("merge_lora onto an existing checkpoint", "error", ["scripts/merge_lora.py", "--lora_path", LORA, "--out_dir", W / "merged"], [W / "merged"], None),
        ("inspect_data --plot a folder", "error", ["scripts/inspect_data.py", "--data_dir", W / "data", "--plot", W], [], None),
        ("mix --destination_path equal to an input", "error", ["scripts/mix_datasets.py", "--inputs", W / "data", "--destination_path", W / "data"], [W / "data"], None),
        ("mix --weights -1", "error", ["scripts/mix_datasets.py", "--inputs", W / "data", "--weights", -1, "--destination_path", W / "m1"], [], None),
    ]


SECRET = "hf_" + "Sweep" * 7  # a token shaped like a real one: no output may show it


def outcome_of(p, expected: str, damaged: bool) -> tuple[str, list[str]]:
    """The case's outcome (see the module docstring) and stderr's meaningful lines (progress bars left out)."""
    err = p.stderr
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("train:", "\r")) and "it/s" not in l]
    if p.returncode is None:
        outcome = "hang"
    elif SECRET in p.stdout + err:
        outcome, lines = "leaked", [line.replace(SECRET, "<the token>") for line in lines]
    elif damaged:
        outcome = "damaged"
    elif "Traceback" in err:
        outcome = "traceback"
    elif expected == "ok":
        outcome = "handled" if p.returncode == 0 else "error"
    elif p.returncode == 0:
        outcome = "handled" if expected == "warn" and "warning" in (p.stdout + err) else "silent"
    else:
        last = lines[-1] if lines else ""
        fragment = expected.split(":", 1)[1] if ":" in expected else None
        outcome = "clear error" if last.startswith("error:") and (fragment is None or fragment in last) else "unclear error"
    return outcome, lines


def run_cases(cases: list, run, ENV: dict, marker: Path) -> list[dict]:
    results = []
    for name, expected, argv, inputs, env in cases:
        argv = argv() if callable(argv) else argv
        before = digest(inputs)
        marker.unlink(missing_ok=True)
        p = run(*argv, env={**ENV, **(env or {})})
        outcome, lines = outcome_of(p, expected, digest(inputs) != before or marker.exists())
        results.append({"case": name, "outcome": outcome, "exit": p.returncode, "last_line": (lines[-1] if lines else "")[:300]})
        print(f"{outcome:14} {name}: {(lines[-1] if lines else '')[:160]}", flush=True)
    return results


def guard_cases(W: Path, CK: Path, FT: list, LORA: Path, PY: str, marker: Path) -> list:
    """Cases where a command must not run, leak or overwrite what the user did not ask for, in CASES' form: a study
    recipe is a closed door (only the dataset tools, their own flags, outputs under its data root), a program path
    comes from the command line only, outputs never overwrite inputs, one run per directory, a LoRA loads only on
    the base weights it was trained on."""
    import torch

    def recipe(name, build):
        return recipe_command(W, CK, name, build)

    payload = W / "payload.sh"  # stands in for a program a file names: it must never run
    payload.write_text(f"#!/bin/sh\ntouch {marker}\n")
    payload.chmod(0o755)
    bench_config = W / "bench.yaml"
    bench_config.write_text(f"compare_litgpt: true\nlitgpt_python: {payload}\nn_layer: 1\nruns: 1\n")
    base = W / "ck_guard"  # its own copy: the cases below try to overwrite it
    shutil.copytree(CK, base)
    (W / "ck_link").symlink_to(base)
    other = W / "ck_other_weights"  # the same config, other weights
    shutil.copytree(CK, other)
    state = torch.load(other / "lit_model.pth", weights_only=True)
    torch.save({k: v + 0.01 if k == "wte.weight" else v for k, v in state.items()}, other / "lit_model.pth")
    old_run = W / "lora_old"  # a LoRA run from before base fingerprints were recorded
    shutil.copytree(LORA.parent, old_run, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    (old_run / "base_fingerprint.json").unlink(missing_ok=True)
    busy, stale = W / "busy", W / "stale"  # a lock held by a live process (this one), and one of a killed run
    gone = subprocess.Popen([PY, "-c", "pass"])
    gone.wait()
    for folder, pid in ((busy, os.getpid()), (stale, gone.pid)):
        folder.mkdir()
        (folder / ".lit_gpt.lock").write_text(f"{pid} {socket.gethostname()}\n")
    qa = W / "qa_guard.jsonl"
    qa.write_text('{"question": "q1", "answer": "a1"}\n{"question": "q2", "answer": "a2"}\n' * 10)
    prepare_qa = ["scripts/prepare_json.py", "--data_path", qa, "--checkpoint_dir", CK, "--columns",
                  '{"instruction": "question", "output": "answer"}']
    return [
        ("recipe running compare_datasets (itself)", "error:recipes run",
         recipe("self", [f"compare_datasets.py --recipe {W / 'self.yaml'}"]), [], None),
        ("recipe step writing outside its data root", "error:outside the data root",
         recipe("escape", [f"mix_datasets.py --inputs {W / 'data'} --destination_path {{data}}/../escaped"]),
         [W / "data"], None),
        ("recipe step with --config", "error:--config",
         recipe("config", [f"mix_datasets.py --inputs {W / 'data'} --destination_path {{data}}/built --config "
                           f"{bench_config}"]), [W / "data"], None),
        ("recipe placeholder {data.__class__}", "error:plain name",
         recipe("attr", ["mix_datasets.py --inputs {data.__class__} --destination_path {data}/built"]), [], None),
        ("benchmark --litgpt_python from a --config file", "error:command line",
         ["scripts/dev/benchmark.py", "--config", bench_config, "--dataset", "fixed", "--steps_per_run", 1], [], None),
        ("full --out_dir equal to --checkpoint_dir", "error:--checkpoint_dir",
         ["finetune/full.py", *FT[1:], "--checkpoint_dir", base, "--out_dir", base], [base], None),
        ("lora --out_dir a symlink to the checkpoint", "error:a link to",
         [*FT, "--checkpoint_dir", base, "--out_dir", W / "ck_link"], [base], None),
        ("export_gguf --output_path onto the checkpoint's lit_model.pth", "error:--checkpoint_dir",
         ["scripts/export_gguf.py", "--checkpoint_dir", base, "--output_path", base / "lit_model.pth"], [base], None),
        ("prepare into a folder holding another dataset", "error:--overwrite true",
         [*prepare_qa, "--destination_path", W / "data"], [W / "data"], None),
        ("merge_lora --out_dir a symlink to the base", "error:a link to",
         ["scripts/merge_lora.py", "--lora_path", LORA, "--checkpoint_dir", base, "--out_dir", W / "ck_link"],
         [base], None),
        ("finetune into an out_dir another run is writing", "error:PID",
         [*FT, "--out_dir", busy], [busy], None),
        ("finetune over the lock of a killed run", "ok", [*FT, "--out_dir", stale], [], None),
        ("prepare into a destination another prepare is writing", "error:PID",
         [*prepare_qa, "--destination_path", busy], [busy], None),
        ("generate/lora.py on other weights of its base's config", "error:--force true",
         ["generate/lora.py", "--lora_path", LORA, "--checkpoint_dir", other, "--max_new_tokens", 2], [], None),
        ("generate/lora.py on other weights with --force true", "warn",
         ["generate/lora.py", "--lora_path", LORA, "--checkpoint_dir", other, "--max_new_tokens", 2, "--force",
          "true"], [], None),
        ("generate/lora.py on a run without a base fingerprint", "ok",
         ["generate/lora.py", "--lora_path", old_run, "--max_new_tokens", 2], [], None),
    ]


def secret_and_crafted_cases(W: Path, CK: Path, inputs: dict) -> list:
    """Cases where a token must stay unseen (--print_config, --help, a misspelt flag, a file to upload) and crafted
    files must be refused in one line before anything is built (a LoRA rank of 10^9, 10^8 layers, a manifest nested
    100,000 deep), plus the data doctor's verdict on train/test overlap."""
    folder = W / "to_upload"  # an HF folder (convert_lit_checkpoint.py's output): what upload.py takes
    shutil.copytree(inputs["hf_dir"], folder)
    leaky, linked = W / "to_upload_leaky", W / "to_upload_linked"
    shutil.copytree(folder, leaky)
    (leaky / "notes.txt").write_text(f"my token: {SECRET}\n")
    shutil.copytree(folder, linked)
    (linked / "passwd").symlink_to("/etc/passwd")
    upload = ["scripts/upload.py", "--repo_id", "me/model", "--dry_run", "true"]
    huge_rank = W / "lora_huge_rank"
    shutil.copytree(inputs["LORA"].parent, huge_rank, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    config = json.loads((huge_rank / "lora_config.json").read_text())
    (huge_rank / "lora_config.json").write_text(json.dumps({**config, "r": 10 ** 9}))
    deep = W / "ck_deep_layers"
    shutil.copytree(CK, deep)
    (deep / "lit_config.json").write_text(json.dumps({**json.loads((CK / "lit_config.json").read_text()),
                                                      "n_layer": 10 ** 8}))
    nested = W / "data_nested"
    shutil.copytree(W / "data", nested)
    (nested / "manifest.json").write_text('{"counts": ' * 100_000 + "1" + "}" * 100_000)
    overlap = W / "data_overlap"
    shutil.copytree(W / "data", overlap)
    import torch
    train = torch.load(overlap / "train.pt", weights_only=True)
    torch.save(train[:3], overlap / "test.pt")
    return [
        ("upload --access_token --print_config", "ok",
         [*upload, "--folder", folder, "--access_token", SECRET, "--print_config"], [], None),
        ("upload --access_token --help", "ok", [*upload, "--access_token", SECRET, "--help"], [], None),
        ("upload with a misspelt --acces_token", "error", [*upload, "--folder", folder, "--acces_token", SECRET],
         [], None),
        ("upload a folder holding a token", "error:notes.txt", [*upload, "--folder", leaky], [leaky], None),
        ("upload a folder with a link to /etc/passwd", "error:passwd", [*upload, "--folder", linked], [linked], None),
        ("generate/lora.py with a LoRA rank of 10^9", "error:r =", ["generate/lora.py", "--lora_path", huge_rank],
         [huge_rank], None),
        ("generate/base.py with 10^8 layers", "error:n_layer", ["generate/base.py", "--checkpoint_dir", deep],
         [deep], None),
        ("inspect_data on a manifest nested 100,000 deep", "error:nested", ["scripts/inspect_data.py", "--data_dir",
         nested], [nested], None),
        ("inspect_data on test examples that are in train", "error:also in train",  # (its plot is written beside)
         ["scripts/inspect_data.py", "--data_dir", overlap], [overlap / "train.pt", overlap / "test.pt"], None),
    ]


def selected(cases: list, only: "str | None") -> list:
    """The cases whose name the regular expression `only` finds (case-insensitively); all of them without one."""
    if only is None:
        return cases
    chosen = [case for case in cases if re.search(only, case[0], re.IGNORECASE)]
    if not chosen:
        sys.exit(f"error: --only {only!r} matches no case; the cases: " + "; ".join(case[0] for case in cases))
    return chosen


def parse_options(argv: "list[str] | None" = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=HERE, help="the checkout whose scripts are run (default: this one)")
    parser.add_argument("--out", type=Path, default=None, help="write the outcomes as JSON here")
    parser.add_argument("--only", default=None, metavar="NAME_PATTERN",
                        help="run only the cases whose name this regular expression finds (case-insensitive), e.g. "
                             "'^convert_gguf|^recipe'; the inputs are built all the same")
    options = parser.parse_args(argv)
    try:
        re.compile(options.only or "")
    except re.error as e:
        parser.error(f"--only {options.only!r} is not a regular expression ({e})")
    return options


def main() -> None:
    options = parse_options()
    SHARED = HERE.parent / "shared"
    W = Path(tempfile.mkdtemp(prefix="sweep-"))
    CK = test_helpers().make_checkpoint(W / "ckpt")  # a tiny checkpoint with the real SmolLM2 tokenizer
    ENV = {**os.environ, "LIT_GPT_DEFAULT_PRECISION": "32-true", "PYTHONWARNINGS": "ignore"}
    run = python_runner(options.repo.resolve(), ENV)
    inputs = make_inputs(W, CK, SHARED, run)
    cases = [*user_error_cases(W, inputs), *guard_cases(W, CK, inputs["FT"], inputs["LORA"], sys.executable,
                                                        inputs["marker"]), *secret_and_crafted_cases(W, CK, inputs),
             *gguf_cases(W, test_helpers()), *recipe_cases(W, CK, SECRET), *json_shape_cases(W, CK, inputs)]
    cases = selected(cases, options.only)
    results = run_cases(cases, run, ENV, inputs["marker"])
    subprocess.run(f"grep -o '{W}/[a-z]*[0-9]*' /proc/mounts | xargs -r -n1 umount -l", shell=True)
    counts = {o: sum(r["outcome"] == o for r in results) for o in dict.fromkeys(r["outcome"] for r in results)}
    print(f"{len(results)} cases: " + ", ".join(f"{n} {o}" for o, n in counts.items()))
    if options.out:
        options.out.write_text(json.dumps(results, indent=1) + "\n")
    shutil.rmtree(W, ignore_errors=True)


if __name__ == "__main__":
    main()
