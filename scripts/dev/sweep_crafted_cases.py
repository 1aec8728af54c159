"""More cases of scripts/dev/sweep_user_errors.py (in its CASES form: name, expected, argv, inputs kept identical,
extra environment): crafted GGUF files, study recipes that try to leave their box or carry a token, and
pathological JSON (nested 100,000 deep, a 10^6-digit number, invalid UTF-8, UTF-16 with a BOM) in each JSON file the
tools read. Imported by the sweep from beside it (sys.path[0])."""

import codecs
import importlib.util
import json
import shutil
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"


def recipe_command(W: Path, CK: Path, name: str, build: list, **recipe) -> list:
    """compare_datasets.py --recipe on a recipe `name` with these build steps (and other keys), writing under W."""
    path = W / f"{name}.yaml"
    path.write_text(json.dumps({"question": "Is the door closed?", "build": build,
                                "compare": {"data_dirs": ["{data}/built"]}, **recipe}))
    return ["scripts/compare_datasets.py", "--recipe", path, "--checkpoint_dir", CK, "--data_root", W / f"{name}_data",
            "--out_dir", W / f"{name}_out"]


def crafted_gguf_module(helpers):
    """tests/gguf/test_crafted_gguf.py, loaded by path: its write_gguf (a tiny Llama GGUF, metadata overridden) and
    raw_gguf (a file from its tensor infos, byte by byte) craft the sweep's files as the unit tests craft theirs."""
    sys.modules.setdefault("helpers", helpers)  # the test module's `from helpers import ...`
    spec = importlib.util.spec_from_file_location("sweep_crafted_gguf", TESTS / "gguf" / "test_crafted_gguf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gguf_cases(W: Path, helpers) -> list:
    """convert_gguf_checkpoint.py on GGUF files whose tensor layout or metadata lie: each refused in one line that
    names the tensor or key, the file untouched; the untouched tiny file converts."""
    crafted = crafted_gguf_module(helpers)
    F32 = crafted.F32
    layouts = {
        "tensors whose data overlap": ([("a", (16,), F32, 0), ("b", (4, 2), F32, 32)], "'a' and 'b' share bytes"),
        "a tensor offset not aligned": ([("a", (4,), F32, 4)], "offset 4 is not a multiple of the alignment 32"),
        "a tensor offset beyond the file": ([("a", (4,), F32, 1 << 40)], "tensor 'a' needs bytes"),
        "a tensor of 2^80 elements": ([("a", (1 << 40, 1 << 40), F32, 0)], "tensor 'a' needs bytes"),
    }
    metadata = {
        "bos_token_id outside the vocabulary": ({"tokenizer.ggml.bos_token_id": 261}, "bos_token_id = 261 is not a"),
        "eos_token_id -1": ({"tokenizer.ggml.eos_token_id": -1}, "eos_token_id = -1 is not a token id"),
        "padding_token_id 2^33": ({"tokenizer.ggml.padding_token_id": 1 << 33}, "padding_token_id = 8589934592"),
        "token_type shorter than tokens": ({"tokenizer.ggml.token_type": [1, 1, 1]}, "token_type has 3 entries"),
        "scores shorter than tokens": ({"tokenizer.ggml.scores": [0.0] * 100}, "scores has 100 entries for 261"),
        "tokens a list of numbers": ({"tokenizer.ggml.tokens": [1, 2, 3]}, "tokens must be a list of strings"),
        "embedding_length a string": ({"llama.embedding_length": "32"}, "embedding_length = '32': must be a whole"),
        "block_count 10^8": ({"llama.block_count": 10 ** 8}, "llama.block_count: n_layer = 100000000"),
        "head_count 0": ({"llama.attention.head_count": 0}, "llama.attention.head_count: n_head = 0"),
        "head_count_kv 0": ({"llama.attention.head_count_kv": 0}, "head_count_kv: n_query_groups = 0"),
        "untouched (converts)": ({}, None),
    }
    cases = []
    for i, (what, (tensors, fragment)) in enumerate(layouts.items()):
        path = W / f"layout{i}.gguf"
        path.write_bytes(crafted.raw_gguf(tensors))
        cases.append((what, f"error:{fragment}", path))
    for i, (what, (overrides, fragment)) in enumerate(metadata.items()):
        path = W / f"metadata{i}.gguf"
        crafted.write_gguf(path, **{key.replace(".", "__"): value for key, value in overrides.items()})
        cases.append((what, f"error:{fragment}" if fragment else "ok", path))
    return [(f"convert_gguf with {what}", expected, ["scripts/convert_gguf_checkpoint.py", "--gguf_path", path,
                                                     "--checkpoint_dir", path.with_suffix("")], [path], None)
            for what, expected, path in cases]


def recipe_cases(W: Path, CK: Path, secret: str) -> list:
    """Study recipes: a step running a script that is not a dataset tool, writing through another placeholder than
    {data}, a recipe including itself, placeholders with a format spec or conversion; and a token given to a step
    (in the step, through a setting, next to --print_config), which no output may show."""
    lima = ["prepare_lima.py --access_token {token} --checkpoint_dir {checkpoint_dir} --destination_path {data}/lima"]
    token = ["--settings", json.dumps({"token": secret})]
    return [
        ("recipe step running download.py", "error:must start with a script",
         recipe_command(W, CK, "download", ["download.py --repo_id x/y --checkpoint_dir {data}/built"]), [], None),
        ("recipe step running ../finetune/lora.py", "error:must start with a script",
         recipe_command(W, CK, "path", ["../finetune/lora.py --out_dir {data}/built"]), [], None),
        ("recipe step writing under {checkpoint_dir}", "error:outside the data root",
         recipe_command(W, CK, "ckout", [f"mix_datasets.py --inputs {W / 'data'} --destination_path "
                                         "{checkpoint_dir}/built"]), [CK], None),
        ("recipe including itself (an include key)", "error:unknown key(s) ['include']",
         recipe_command(W, CK, "include", [], include=str(W / "include.yaml")), [], None),
        ("recipe placeholder {data:>10} (a format spec)", "error:plain name",
         recipe_command(W, CK, "spec", ["mix_datasets.py --inputs {data:>10} --destination_path {data}/built"]), [],
         None),
        ("recipe placeholder {data!r} (a conversion)", "error:plain name",
         recipe_command(W, CK, "conv", ["mix_datasets.py --inputs {data!r} --destination_path {data}/built"]), [],
         None),
        ("recipe step --access_token then a failing step", "error:build step 1",
         [*recipe_command(W, CK, "token", [lima[0] + " --data_path {data}/missing.jsonl"], settings={"token": "x"}),
          *token], [], None),
        ("recipe step --access_token with a bad flag value", "error:its command line was refused",
         [*recipe_command(W, CK, "tokenflag", [lima[0] + " --include_multiturn_conversations maybe"],
                          settings={"token": "x"}), *token], [], None),
        ("recipe step --access_token and --print_config", "error:--print_config is not a flag",
         recipe_command(W, CK, "tokenprint", [lima[0].replace("{token}", secret) + " --print_config"]), [], None),
    ]


QA_COLUMNS = '{"instruction": "question", "output": "answer"}'  # the sweep's qa.jsonl
JSON_SHAPES = {  # name -> (the crafted bytes made from the file's own, what the one-line error says)
    "nested 100,000 deep": (lambda raw: b"[" * 100_000 + b"]" * 100_000, "nested more than 64 levels"),
    "a 10^6-digit number": (lambda raw: b'[{"a": ' + b"9" * 10 ** 6 + b"}]", "a number of 1000000 digits"),
    "invalid UTF-8": (lambda raw: raw.replace(b'"', b'"\xff', 1), "UTF-8"),
    "UTF-16 with a BOM": (lambda raw: codecs.BOM_UTF16_LE + raw.decode("utf-8").encode("utf-16-le"), "UTF-16 text"),
}


def json_shape_cases(W: Path, CK: Path, inputs: dict) -> list:
    """Each JSON file the tools read (data rows as a JSON array and as JSON Lines, a dataset manifest,
    lit_config.json, tokenizer_config.json, an HF config.json and shard index) in each of JSON_SHAPES, read by a tool
    that needs it: one line naming the file and what is wrong, the file untouched."""
    rows = W / "rows.json"
    rows.write_text(json.dumps([{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]))
    prepare = ["scripts/prepare_json.py", "--checkpoint_dir", CK, "--destination_path"]
    kinds = {  # what -> (the folder or file to copy, the JSON file in the copy, the command given the copy)
        "data rows (JSON)": (rows, "", lambda c: [*prepare, c.with_suffix(".out"), "--data_path", c]),
        "data rows (JSONL)": (inputs["qa"], "", lambda c: [*prepare, c.with_suffix(".out"), "--data_path", c,
                                                           "--columns", QA_COLUMNS]),
        "manifest.json": (W / "data", "manifest.json", lambda c: ["scripts/inspect_data.py", "--data_dir", c]),
        "lit_config.json": (CK, "lit_config.json", lambda c: ["generate/base.py", "--checkpoint_dir", c]),
        "tokenizer_config.json": (CK, "tokenizer_config.json",
                                  lambda c: ["scripts/prepare_json.py", "--checkpoint_dir", c, "--data_path", rows,
                                             "--destination_path", W / f"{c.name}.out"]),
        "HF config.json": (inputs["hf_dir"], "config.json",
                           lambda c: ["scripts/convert_hf_checkpoint.py", "--checkpoint_dir", c]),
        "HF shard index": (inputs["hf_dir"], "model.safetensors.index.json",
                           lambda c: ["scripts/convert_hf_checkpoint.py", "--checkpoint_dir", c]),
    }
    cases = []
    for k, (what, (source, name, command)) in enumerate(kinds.items()):
        for s, (shape, (craft, fragment)) in enumerate(JSON_SHAPES.items()):
            if what == "manifest.json" and shape == "nested 100,000 deep":
                continue  # secret_and_crafted_cases has it
            copy = W / f"json{k}_{s}{source.suffix}"
            shutil.copytree(source, copy) if source.is_dir() else shutil.copyfile(source, copy)
            file = copy / name if name else copy
            if not file.exists():  # the shard index of a sharded checkpoint
                file.write_text(json.dumps({"weight_map": {"lm_head.weight": "model.safetensors"}}))
            file.write_bytes(craft(file.read_bytes()))
            cases.append((f"{what} {shape}", f"error:{fragment}", command(copy), [file], None))
    return cases
