"""scripts/dev/gpu_check.sh --dry_run (what CI runs of the GPU check, so that it cannot rot before a GPU is at hand)
and the bookkeeping of scripts/dev/gpu_check.py: the wheels list, the wheels in .whl/, the slimmed wheel."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from helpers import load_cached_script


@pytest.mark.slow  # the check's scripts in real processes (~40 s)
def test_dry_run_checks_wheels_tree_size_cuda_tests_and_speed(tmp_path, root_dir):
    env = {k: v for k, v in os.environ.items() if k != "LIT_GPT_CUDA_TESTS_DEVICE"}
    env.update(PYTHON=sys.executable, PYTHONPATH=str(root_dir))
    proc = subprocess.run(["bash", str(root_dir / "scripts" / "dev" / "gpu_check.sh"), "--dry_run", "--out", tmp_path],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "gpu_check.log"]
    assert "all checks passed" in (tmp_path / "gpu_check.log").read_text()
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] and report["mode"] == "dry run (CPU)"
    assert [(p["part"], p["status"]) for p in report["parts"]] == [
        ("wheels", "ok"), ("cuda_tests", "ok"), ("speed_tiny", "ok"), ("generation", "ok")]

    wheels = report["wheels"]
    assert {"jsonargparse", "gguf", "litgpt", "pytest", "bitsandbytes"} <= {r["name"] for r in wheels["requirements"]}
    assert 0 < wheels["tree_bytes"] and 0 < wheels["wheels_bytes"] and not wheels["problems"]
    assert wheels["total_bytes"] == wheels["tree_bytes"] + wheels["wheels_bytes"] <= 64 * 2 ** 20

    tests = report["tests"]
    test_functions = sum(path.read_text().count("\ndef test_") for path in (root_dir / "tests" / "cuda").glob("*.py"))
    assert tests["collected"] >= test_functions >= 5 and tests["deselected"] == 0
    assert tests["counts"]["skipped"] == tests["collected"]
    assert {t["message"] for t in tests["tests"]} == {"Skipped: needs a CUDA GPU"}

    train = [row for row in report["speed"] if row["part"] == "train"]
    assert [row["method"] for row in train] == ["lora", "full"]
    for row in train:
        ours = row["ours"]
        assert ours["tokens_per_s"] > 0 and ours["peak_memory_gb"] > 0 and ours["achieved_tflops"] > 0
    generation = [row for row in report["speed"] if row["part"] == "generation"]
    assert [row["batch_size"] for row in generation] == [1, 2] and all(row["tokens_per_s"] > 0 for row in generation)
    assert "| tiny (dry run) | lora |" in report["train_table"]


def test_wheels_list_problems_are_named(tmp_path):
    gpu_check = load_cached_script("dev/gpu_check")
    listing = tmp_path / "wheels.txt"
    listing.write_text("# comment\ngguf==0.19.0  # 0.12 MB: export\nfoo>=1.0  # 1 MB: x\n"
                       "gguf==0.19.0  # 0.12 MB: again\n")
    requirements, problems = gpu_check.read_requirements(listing)
    assert [(r.name, r.version, r.recorded_mb) for r in requirements] == [("gguf", "0.19.0", 0.12)] * 2
    assert len(problems) == 2 and "wheels.txt:3" in problems[0] and "gguf is listed twice" in problems[1]

    wheel_dir = tmp_path / ".whl"
    wheel_dir.mkdir()
    (wheel_dir / "Typeshed_Client-2.15.0-py3-none-any.whl").write_bytes(b"x")
    (wheel_dir / "stray-1.0-py3-none-any.whl").write_bytes(b"x")
    wanted = [gpu_check.Requirement("typeshed-client", "2.15.0", 0.8, ""),
              gpu_check.Requirement("gguf", "0.19.0", 0.1, "")]
    found, problems = gpu_check.wheel_files(wanted, wheel_dir)
    assert list(found) == ["typeshed-client"]
    assert len(problems) == 2 and "no wheel of gguf==0.19.0" in problems[0] and "stray-1.0" in problems[1]


def test_slimmed_wheel_keeps_the_matching_libraries_and_their_record_lines(tmp_path):
    gpu_check = load_cached_script("dev/gpu_check")
    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    names = ["bitsandbytes/__init__.py"] + [f"bitsandbytes/libbitsandbytes_{kind}.so"
                                            for kind in ("cpu", "cuda128", "cuda130", "rocm72")]
    with zipfile.ZipFile(wheel, "w") as z:
        for name in names:
            z.writestr(name, b"\0" * 100)
        z.writestr("bitsandbytes-0.50.2.dist-info/RECORD", "".join(f"{n},sha256=x,100\n" for n in names))
    gpu_check.slim_wheel(wheel, gpu_check.SLIMMED["bitsandbytes"])
    with zipfile.ZipFile(wheel) as z:
        kept = [names[0], names[1], names[3]]
        assert z.namelist() == kept + ["bitsandbytes-0.50.2.dist-info/RECORD"]
        record = z.read("bitsandbytes-0.50.2.dist-info/RECORD").decode()
        assert [line.split(",")[0] for line in record.splitlines()] == kept


def test_without_pip_the_wheels_are_unpacked_into_the_target(tmp_path, monkeypatch):
    gpu_check = load_cached_script("dev/gpu_check")
    wheel = tmp_path / "tiny_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tiny_pkg/__init__.py", "VALUE = 7\n")
        z.writestr("tiny_pkg-1.0.dist-info/METADATA", "Name: tiny-pkg\nVersion: 1.0\n")
    find_spec = gpu_check.importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None if name == "pip" else find_spec(name))
    assert gpu_check.install_wheels({"tiny-pkg": wheel}, tmp_path / "site") == (["tiny-pkg"], None)
    assert (tmp_path / "site" / "tiny_pkg" / "__init__.py").read_text() == "VALUE = 7\n"
    assert (tmp_path / "site" / "tiny_pkg-1.0.dist-info" / "METADATA").is_file()
