#!/usr/bin/env bash
# The GPU check, one command (issue 22). On a machine with a CUDA GPU, from the repository root:
#
#     bash scripts/dev/gpu_check.sh --out "$OUT"        # the device tool: carry [".whl"]
#
# 1. wheels: installs the packages the GPU image lacks from .whl/ (scripts/dev/gpu_wheels.txt; --no-deps, only
#    where the distribution is missing) into /tmp/site, and checks that the tree and the wheels fit in 64 MiB;
# 2. cuda_tests: the CUDA tests (tests/cuda, marker `cuda`), each outcome logged as it ends;
# 3. speed_<model>: LoRA and full fine-tuning throughput at 2048 tokens of random-initialised SmolLM2-135M,
#    Gemma-3-270M, Qwen2.5-0.5B and Llama-3.2-1B shapes, ours and LitGPT 0.5.13 side by side (scripts/dev/gpu_speed.py);
# 4. generation: our batched greedy generation, tokens/s;
# then writes $OUT/gpu_check.json (everything, with the tables in markdown) beside $OUT/gpu_check.log.
# Every part runs under its own time limit, cut to what is left of TOTAL_SECONDS (7 min 45 s: the check ends within
# 8 minutes, so two fit in a quarter of an hour), and a part that fails or runs out of time does not stop the others.
#
#     bash scripts/dev/gpu_check.sh --dry_run --out DIR   # CPU (CI, tests/scripts/test_gpu_check.py): the wheels
#         list and the tree size, the CUDA tests collected and skipped, the speed part on a tiny model; < 1 minute
#     bash scripts/dev/gpu_check.sh --fetch_wheels        # here, with PyPI: downloads .whl/ for the GPU machine
#
# Exit 0 when every check of the report passed. PYTHON picks the interpreter (default python3).
set -uo pipefail  # no -e: a part that fails must not stop the others

cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
PY=${PYTHON:-python3}
OUT="" DRY_RUN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        --dry_run) DRY_RUN=1; shift ;;
        --fetch_wheels) exec "$PY" scripts/dev/gpu_check.py fetch ;;
        *) echo "gpu_check.sh: unknown argument $1 (use --out DIR, --dry_run or --fetch_wheels)" >&2; exit 2 ;;
    esac
done
[ -n "$OUT" ] || { echo "gpu_check.sh: --out DIR is required (where gpu_check.json and gpu_check.log go)" >&2; exit 2; }
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
SITE=/tmp/site

TOTAL_SECONDS=465
REPORT_SECONDS=20  # kept back for the report
START=$SECONDS

# part NAME LIMIT COMMAND...: COMMAND under `timeout` (its whole process group), the limit cut to the time left;
# one line per part in parts.tsv: name, exit code ("-": not run), seconds taken, limit
part() {
    local name=$1 limit=$2 left code t0
    shift 2
    left=$((TOTAL_SECONDS - (SECONDS - START) - REPORT_SECONDS))
    ((limit > left)) && limit=$left
    if ((limit < 5)); then
        printf '%s\t-\t0\t0\n' "$name" >>"$WORK/parts.tsv"
        echo "== $name: not run, no time left"
        return
    fi
    echo "== $name (limit ${limit} s)"
    t0=$SECONDS
    timeout -k 5 "$limit" "$@"
    code=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$code" $((SECONDS - t0)) "$limit" >>"$WORK/parts.tsv"
    echo "== $name: exit $code after $((SECONDS - t0)) s"
}

run_check() {
    echo "gpu_check: $(date -u +%FT%TZ), $([ $DRY_RUN = 1 ] && echo "dry run on the CPU" || echo GPU), work in $WORK"
    # the project from this tree (no `pip install -e .` there) and, on the GPU, the wheels installed there
    if [ $DRY_RUN = 1 ]; then
        export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
        command -v nvidia-smi >/dev/null && timeout 10 nvidia-smi
    fi
    export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
    export GPU_CHECK_TEST_LOG="$WORK/tests.jsonl"

    if [ $DRY_RUN = 1 ]; then
        part wheels 30 "$PY" scripts/dev/gpu_check.py wheels --out "$WORK/wheels.json"
    else
        part wheels 45 "$PY" scripts/dev/gpu_check.py wheels --out "$WORK/wheels.json" --install "$SITE"
    fi
    # the quick model tests first, then fine-tuning (its compile test last): a time limit cuts the slowest;
    # scripts/dev/gpu_test_log.py logs each outcome as it comes
    PYTHONPATH="$ROOT/scripts/dev:$PYTHONPATH" part cuda_tests 170 "$PY" -m pytest -m cuda -p gpu_test_log \
        -p no:cacheprovider -q -rs tests/cuda/test_cuda_model.py tests/cuda/test_cuda_finetune.py
    "$PY" scripts/dev/gpu_check.py tests --log "$WORK/tests.jsonl" --out "$WORK/tests.json"

    if [ $DRY_RUN = 1 ]; then
        part speed_tiny 60 "$PY" scripts/dev/gpu_speed.py train --dry_run true --out "$WORK/speed.jsonl"
        part generation 30 "$PY" scripts/dev/gpu_speed.py generate --dry_run true --out "$WORK/speed.jsonl" \
            --batch_sizes "1 2" --num_prompts 4 --batch1_prompts 2 --max_new_tokens 8 --runs 1
    else
        # each model: 4 processes (ours and LitGPT, LoRA and full) to start, warm up and time, ~15 s each (a guess);
        # the largest model last, after generation: where time runs short, it is the one cut
        part speed_SmolLM2-135M 70 "$PY" scripts/dev/gpu_speed.py train --model SmolLM2-135M --out "$WORK/speed.jsonl"
        part speed_gemma-3-270m 70 "$PY" scripts/dev/gpu_speed.py train --model gemma-3-270m --out "$WORK/speed.jsonl"
        part speed_Qwen2.5-0.5B 75 "$PY" scripts/dev/gpu_speed.py train --model Qwen2.5-0.5B --out "$WORK/speed.jsonl"
        part generation 40 "$PY" scripts/dev/gpu_speed.py generate --out "$WORK/speed.jsonl"
        part speed_Llama-3.2-1B 85 "$PY" scripts/dev/gpu_speed.py train --model Llama-3.2-1B --out "$WORK/speed.jsonl"
    fi

    timeout -k 5 "$REPORT_SECONDS" "$PY" scripts/dev/gpu_check.py report --work "$WORK" --out "$OUT/gpu_check.json" \
        $([ $DRY_RUN = 1 ] && echo --dry_run)
    local code=$?
    echo "gpu_check: $((SECONDS - START)) s in all"
    return $code
}

run_check 2>&1 | tee "$OUT/gpu_check.log"
code=${PIPESTATUS[0]}
rm -rf "$WORK"
exit "$code"
