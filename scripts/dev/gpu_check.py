"""The bookkeeping of scripts/dev/gpu_check.sh: the wheels that travel with the tree (fetch here, check, install
there), the summary of the CUDA tests' log (scripts/dev/gpu_test_log.py), and the one JSON report of a check.

    python scripts/dev/gpu_check.py fetch                        # download .whl/ (pip download; PyPI)
    python scripts/dev/gpu_check.py wheels --out wheels.json [--install /tmp/site]
    python scripts/dev/gpu_check.py tests --log tests.jsonl --out tests.json
    python scripts/dev/gpu_check.py report --work WORK --out gpu_check.json [--dry_run]

Standard library only, and argparse rather than the scripts' run_cli: it runs on the GPU machine before the wheels
(jsonargparse among them) are installed.
"""

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS_FILE = ROOT / "scripts" / "dev" / "gpu_wheels.txt"
WHEEL_DIR = ROOT / ".whl"  # git-ignored; the device tool carries it (carry: [".whl"])
TREE_LIMIT_BYTES = 64 * 2 ** 20  # what the device tool copies: the tree (tracked + untracked, not ignored) + .whl/
# the GPU machine's Python and platform (pip download fetches wheels for it, not for this machine)
DOWNLOAD_TARGET = ["--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                   "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux_2_17_x86_64",
                   "--platform", "manylinux2014_x86_64"]
# bitsandbytes' wheel holds kernels for every CUDA and ROCm version (43 MB); the GPU image's torch is CUDA 13
SLIMMED = {"bitsandbytes": re.compile(r"libbitsandbytes_(cpu|cuda13\d)\.so$")}
REQUIREMENT_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s+#\s*([\d.]+) MB:\s*(.+)$")
SKIP_REASON = "needs a CUDA GPU"


@dataclass
class Requirement:
    name: str
    version: str
    recorded_mb: float  # the fetched wheel's size, as written in gpu_wheels.txt
    why: str

    def wheel_prefix(self) -> str:
        """How a wheel file of this requirement starts (wheel names spell runs of -_. as one _)."""
        return f"{normalize(self.name)}-{self.version}-"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def read_requirements(path: Path = WHEELS_FILE) -> "tuple[list[Requirement], list[str]]":
    requirements, problems = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = REQUIREMENT_LINE.match(line.strip())
        if match is None:
            problems.append(f"{path.name}:{number}: not `name==version  # N.NN MB: why`: {line.strip()!r}")
            continue
        name, version, mb, why = match.groups()
        requirements.append(Requirement(name, version, float(mb), why))
    names = [normalize(r.name) for r in requirements]
    problems += [f"{path.name}: {name} is listed twice" for name in sorted({n for n in names if names.count(n) > 1})]
    return requirements, problems


def tree_bytes(root: Path = ROOT) -> "tuple[int, str]":
    """Bytes of what travels besides .whl/: git's tracked and untracked-but-not-ignored files (where git works; on
    the GPU machine, which has only the copy, every file)."""
    try:
        listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                                 capture_output=True, check=True).stdout.decode()
        files = [root / name for name in listing.split("\0") if name]
        source = "git ls-files --cached --others --exclude-standard"
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in root.rglob("*") if ".git" not in p.parts and WHEEL_DIR not in p.parents]
        source = "every file under the root"
    return sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink()), source


def wheel_files(requirements: list, wheel_dir: Path = WHEEL_DIR) -> "tuple[dict, list[str]]":
    """{requirement name: its wheel in wheel_dir} and what is wrong there (a wheel missing, one not listed)."""
    files = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
    found, problems = {}, []
    for requirement in requirements:
        matching = [f for f in files if f.name.lower().startswith(requirement.wheel_prefix())]
        if matching:
            found[requirement.name] = matching[0]
        elif files:
            problems.append(f"{wheel_dir.name}/ has no wheel of {requirement.name}=={requirement.version} "
                            "(bash scripts/dev/gpu_check.sh --fetch_wheels)")
    stray = [f.name for f in files if f not in found.values()]
    problems += [f"{wheel_dir.name}/{name} is not in {WHEELS_FILE.name}" for name in stray]
    return found, problems


def missing(requirements: list) -> list:
    """The requirements whose distribution this interpreter does not have (any version)."""
    absent = []
    for requirement in requirements:
        try:
            metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            absent.append(requirement)
    return absent


def check_wheels(out: Path, install: "Path | None") -> int:
    """The wheels list, the files in .whl/, the size of what travels (64 MiB at most) and, with --install, the
    missing distributions installed from .whl/ (no index, no dependencies) into that folder."""
    requirements, problems = read_requirements()
    found, file_problems = wheel_files(requirements)
    problems += file_problems
    tree, tree_source = tree_bytes()
    if found:
        wheels, wheels_source = sum(f.stat().st_size for f in found.values()), f"{WHEEL_DIR.name}/"
    else:
        wheels, wheels_source = int(sum(r.recorded_mb for r in requirements) * 1e6), f"sizes in {WHEELS_FILE.name}"
    if tree + wheels > TREE_LIMIT_BYTES:
        problems.append(f"the tree ({tree / 2 ** 20:.1f} MiB) and the wheels ({wheels / 2 ** 20:.1f} MiB) exceed "
                        f"{TREE_LIMIT_BYTES / 2 ** 20:.0f} MiB")
    absent = missing(requirements)
    result = {"requirements": [asdict(r) for r in requirements], "wheel_dir": str(WHEEL_DIR),
              "wheels_found": sorted(f.name for f in found.values()), "tree_bytes": tree, "tree_source": tree_source,
              "wheels_bytes": wheels, "wheels_source": wheels_source, "total_bytes": tree + wheels,
              "limit_bytes": TREE_LIMIT_BYTES, "fits": tree + wheels <= TREE_LIMIT_BYTES,
              "missing_here": [r.name for r in absent], "installed": [], "problems": problems}
    if install is not None:
        result["installed"], result["install_error"] = install_wheels({r.name: found[r.name] for r in absent
                                                                       if r.name in found}, install)
        if len(result["installed"]) < len(absent):
            problems.append(f"not installed: {sorted(set(result['missing_here']) - set(result['installed']))}")
    out.write_text(json.dumps(result, indent=2))
    for problem in problems:
        print(f"wheels: {problem}", file=sys.stderr)
    print(f"wheels: {len(requirements)} listed, {len(found)} in {WHEEL_DIR.name}/, missing here: "
          f"{result['missing_here']}; tree {tree / 2 ** 20:.1f} MiB + wheels {wheels / 2 ** 20:.1f} MiB "
          f"({wheels_source}) of {TREE_LIMIT_BYTES / 2 ** 20:.0f} MiB")
    return 1 if problems else 0


def install_wheels(files: dict, target: Path) -> "tuple[list[str], str | None]":
    """{requirement name: wheel} installed into target, all in one pip call: (the names installed, pip's error).
    Without pip, each wheel is unpacked there (what pip --target --no-deps does, less the console scripts)."""
    if not files:
        return [], None
    if importlib.util.find_spec("pip") is None:
        for wheel in files.values():
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
        return list(files), None
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", str(target), *map(str, files.values())]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        return [], proc.stderr[-3000:]
    return list(files), None


def fetch() -> int:
    """pip download of every listed wheel for the GPU machine into .whl/, the big ones slimmed; prints the sizes."""
    requirements, problems = read_requirements()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    WHEEL_DIR.mkdir(exist_ok=True)
    for requirement in requirements:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   *DOWNLOAD_TARGET, "-d", str(WHEEL_DIR), f"{requirement.name}=={requirement.version}"]
        if subprocess.run(command).returncode != 0:
            print(f"fetch: pip download {requirement.name}=={requirement.version} failed", file=sys.stderr)
            return 1
    found, problems = wheel_files(requirements)
    for name, keep in SLIMMED.items():
        if name in found:
            slim_wheel(found[name], keep)
    for requirement in requirements:
        size = found[requirement.name].stat().st_size / 1e6 if requirement.name in found else 0.0
        note = "" if abs(size - requirement.recorded_mb) < 0.02 else f" (listed as {requirement.recorded_mb:.2f} MB)"
        print(f"{requirement.name}=={requirement.version}  # {size:.2f} MB{note}")
    total = sum(f.stat().st_size for f in found.values()) + tree_bytes()[0]
    print(f"tree + wheels: {total / 2 ** 20:.1f} MiB of {TREE_LIMIT_BYTES / 2 ** 20:.0f} MiB")
    print("\n".join(problems), file=sys.stderr)
    return 1 if problems or total > TREE_LIMIT_BYTES else 0


def slim_wheel(path: Path, keep: "re.Pattern") -> None:
    """Rewrites the wheel without the shared libraries `keep` does not match (and their RECORD lines)."""
    slim = path.with_suffix(".slim")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
        dropped = {i.filename for i in source.infolist() if i.filename.endswith(".so") and not keep.search(i.filename)}
        for info in source.infolist():
            if info.filename in dropped:
                continue
            data = source.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = "".join(line for line in data.decode().splitlines(True)
                               if line.split(",")[0] not in dropped).encode()
            target.writestr(info, data)
    slim.replace(path)


def summarize_tests(log: Path, out: Path) -> int:
    """The test log of scripts/dev/gpu_test_log.py as one JSON: counts, and each test's outcome, time, message and
    recorded properties; tests collected but never reported (the part's time limit) are counted as not run."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    result = {"collected": sum(r.get("collected", 0) for r in records),
              "deselected": sum(r.get("deselected", 0) for r in records),
              "tests": [{k: r[k] for k in ("name", "when", "outcome", "seconds", "message", "properties")}
                        for r in records if "name" in r]}
    outcomes = [t["outcome"] for t in result["tests"] if t["when"] != "teardown"]
    result["counts"] = {k: outcomes.count(k) for k in ("passed", "failed", "skipped")}
    result["counts"]["not_run"] = result["collected"] - len(outcomes)
    result["counts"]["teardown_errors"] = sum(t["when"] == "teardown" for t in result["tests"])
    out.write_text(json.dumps(result, indent=2))
    print(f"tests: {result['collected']} collected, {result['counts']}, {result['deselected']} deselected")
    return 0 if records else 1


# ---- the report ---------------------------------------------------------------------------------------------------
def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def read_parts(path: Path) -> list:
    """gpu_check.sh's parts.tsv (name, exit code or "-" for not run, seconds, time limit) as dicts with a status."""
    parts = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, code, seconds, limit = line.split("\t")
        status = {"0": "ok", "124": "timed out", "137": "killed (time limit)", "-": "not run: no time left"}.get(
            code, f"failed (exit {code})")
        parts.append({"part": name, "status": status, "exit_code": None if code == "-" else int(code),
                      "seconds": int(seconds), "limit_s": int(limit)})
    return parts


def environment() -> dict:
    found = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import torch
    except ImportError:
        return found
    found.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        found.update(gpu=torch.cuda.get_device_name(), gpu_capability=list(torch.cuda.get_device_capability()),
                     gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1))
    return found


def _cell(value, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def train_table(rows: list) -> str:
    lines = ["| model | method | ours tokens/s | ours MFU (bf16 peak) | ours peak memory | LitGPT tokens/s | "
             "LitGPT MFU (bf16 peak) | LitGPT peak memory | ours / LitGPT |", "|---" * 9 + "|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['method']} | failed: {row['error'][:120]} |" + " |" * 6)
            continue
        cells = [row["model"], row["method"]]
        for name in ("ours", "litgpt"):
            side = row.get(name) if isinstance(row.get(name), dict) else {}
            cells += [_cell(side.get("tokens_per_s")), _cell(side.get("mfu_vs_bf16_peak"), "{:.1%}"),
                      _cell(side.get("peak_memory_gb"), "{:.1f} GB")]
        cells.append(_cell(row.get("speedup_vs_litgpt"), "{:.2f}x"))
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def generation_table(rows: list) -> str:
    lines = ["| model | batch size | prompts | new tokens/s | vs batch 1 |", "|---|---|---|---|---|"]
    for row in rows:
        result = (f"{_cell(row.get('tokens_per_s'))} | {_cell(row.get('speedup_vs_batch1'), '{:.2f}x')}"
                  if "error" not in row else f"failed: {row['error'][:120]} |")
        lines.append(f"| {row['model']} | {row['batch_size']} | {row['prompts']} | {result} |")
    return "\n".join(lines)


def checks(report: dict, dry_run: bool) -> list:
    """What must hold: every part ran; on a CPU (dry run) every CUDA test is collected and skipped for want of a GPU;
    on a GPU none fails. Each check: {check, ok, detail}."""
    wheels, tests = report["wheels"] or {}, report["tests"] or {}
    train = [r for r in report["speed"] if r.get("part") == "train"]
    generation = [r for r in report["speed"] if r.get("part") == "generation"]
    skipped = [t for t in tests.get("tests", []) if t["outcome"] == "skipped" and t["when"] != "teardown"]
    found = [("every part ran and exited 0", all(p["status"] == "ok" for p in report["parts"]),
              {p["part"]: p["status"] for p in report["parts"]}),
             ("the wheels list parses, the tree and wheels fit", bool(wheels.get("requirements"))
              and not wheels.get("problems"), wheels.get("problems")),
             ("training rows have numbers", bool(train) and all((r.get("ours") or {}).get("tokens_per_s")
                                                                  for r in train), [r.get("error") for r in train]),
             ("generation rows have numbers", bool(generation) and all(r.get("tokens_per_s") for r in generation),
              [r.get("error") for r in generation])]
    if dry_run:
        found.append(("the CUDA tests are collected and all skipped for want of a GPU",
                      tests.get("collected", 0) > 0 and len(skipped) == tests["collected"]
                      and all(SKIP_REASON in (t["message"] or "") for t in skipped) and not tests.get("deselected"),
                      f"{tests.get('collected', 0)} collected, {len(skipped)} skipped, "
                      f"{tests.get('deselected', 0)} without the cuda marker"))
    else:
        found.append(("a CUDA GPU is present", report["environment"].get("cuda_available", False),
                      report["environment"].get("gpu")))
        counts = tests.get("counts") or {}
        found.append(("every CUDA test ran and none failed", tests.get("collected", 0) > 0 and not counts["failed"]
                      and not counts["not_run"] and not counts["teardown_errors"], counts))
    return [{"check": name, "ok": bool(ok), "detail": detail} for name, ok, detail in found]


def write_report(work: Path, out: Path, dry_run: bool) -> int:
    speed = [json.loads(line) for line in (work / "speed.jsonl").read_text().splitlines()
             if line.strip()] if (work / "speed.jsonl").is_file() else []
    report = {"mode": "dry run (CPU)" if dry_run else "GPU", "environment": environment(),
              "parts": read_parts(work / "parts.tsv"), "wheels": read_json(work / "wheels.json"),
              "tests": read_json(work / "tests.json"), "speed": speed}
    report["train_table"] = train_table([r for r in speed if r.get("part") == "train"])
    report["generation_table"] = generation_table([r for r in speed if r.get("part") == "generation"])
    report["checks"] = checks(report, dry_run)
    report["ok"] = all(c["ok"] for c in report["checks"])
    out.write_text(json.dumps(report, indent=2))
    print(report["train_table"] + "\n\n" + report["generation_table"] + "\n")
    for check in report["checks"]:
        print(f"{'ok  ' if check['ok'] else 'FAIL'} {check['check']}: {check['detail']}")
    print(f"report: {out} ({'all checks passed' if report['ok'] else 'some checks failed'})")
    return 0 if report["ok"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download the listed wheels into .whl/")
    wheels = commands.add_parser("wheels", help="check the wheels and the tree size; install the missing ones")
    wheels.add_argument("--out", type=Path, required=True)
    wheels.add_argument("--install", type=Path, help="install the missing distributions into this folder")
    tests = commands.add_parser("tests", help="summarize the CUDA tests' log (scripts/dev/gpu_test_log.py)")
    tests.add_argument("--log", type=Path, required=True)
    tests.add_argument("--out", type=Path, required=True)
    report = commands.add_parser("report", help="merge the parts into one JSON report")
    report.add_argument("--work", type=Path, required=True)
    report.add_argument("--out", type=Path, required=True)
    report.add_argument("--dry_run", action="store_true")
    args = parser.parse_args()
    if args.command == "fetch":
        return fetch()
    if args.command == "wheels":
        return check_wheels(args.out, args.install)
    if args.command == "tests":
        return summarize_tests(args.log, args.out)
    return write_report(args.work, args.out, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
