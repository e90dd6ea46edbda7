#!/usr/bin/env bash
# The GPU check in one command (DEVELOPERS.md): run it whenever a session has an accelerator.
#
#   tools/gpu_check.sh                  # or: make gpu-check
#   GPU_CHECK_DRY=1 tools/gpu_check.sh  # the same steps on the CPU at tiny sizes (no GPU needed)
#
# Steps, each under its own time limit (under 8 minutes in all; about 2 expected on an H200). It needs
# a python with a CUDA build of torch and the project's requirements (pytest included): .venv's, else
# the one on PATH.
#   machine    torch, CUDA and the GPU (nvidia-smi); no CUDA device here ends the check at once
#   cuda-tests every test marked `cuda` (pytest -m cuda)
#   loss       perco-viz bench loss at n = 1,024 (with the O(n³) reference), 4,096 and 16,384
#   estimate   perco-viz bench estimate: 10⁷ sampled triplets on 10⁶ rows
#   epoch      perco-viz bench epoch: one engine epoch on 50,000 synthetic 3×32×32 images
# Every figure goes to ONE markdown file, $OUT/gpu_check.md (./gpu_check.md when OUT is unset),
# printed at the end. Exit status 0 when every step passed; 1 otherwise, the failed steps named
# on stderr and in the file. Copy what it printed into docs/benchmarks.md.
set -euo pipefail

RESULTS_DIR=$(mkdir -p "${OUT:-.}" && cd "${OUT:-.}" && pwd)  # OUT relative to where it was called
RESULTS="$RESULTS_DIR/gpu_check.md"
cd "$(dirname "$0")/.."
PY=$(command -v python || command -v python3 || echo python)
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
DRY=${GPU_CHECK_DRY:-0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILED=()
SUMMARY=""

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    LOSS_ARGS=(--sizes 64,128 --reference-max 64 --repeats 1)
    ESTIMATE_ARGS=(--rows 2000 --triplets 20000)
    EPOCH_ARGS=(--n 200 --batch-size 64)
else
    DEVICE=cuda
    LOSS_ARGS=(--sizes 1024,4096,16384 --reference-max 1024)  # the O(n³) reference at 1,024 only
    ESTIMATE_ARGS=(--rows 1000000 --triplets 10000000)
    EPOCH_ARGS=(--n 50000 --batch-size 512)
fi

# step NAME LIMIT_S CMD...: run CMD under `timeout`, append its output (and its --json, when it
# wrote $WORK/NAME.json) to the results; a failure is recorded, and the next step still runs.
step() {
    local name=$1 limit=$2
    shift 2
    local log="$WORK/$name.log" rc=0 t0 secs status
    local shown=${LABEL:-$*}
    echo "[gpu_check] $name (limit ${limit} s): $shown" >&2
    t0=$(date +%s.%N)
    timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1 || rc=$?
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" = 0 ] && [ -n "${CHECK:-}" ]; then
        if ! eval "$CHECK" >>"$log" 2>&1; then rc=1; fi
    fi
    case $rc in
        0) status=passed ;;
        124 | 137) status="FAILED: timed out after ${limit} s" ;;
        *) status="FAILED: exit status $rc" ;;
    esac
    {
        printf '## %s\n\n`%s` — %s in %s s\n\n```\n' "$name" "$shown" "$status" "$secs"
        tail -n 60 "$log"
        printf '```\n\n'
        if [ -s "$WORK/$name.json" ]; then
            printf '```json\n'
            "$PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$WORK/$name.json" || true
            printf '```\n\n'
        fi
    } >>"$RESULTS"
    SUMMARY+="| $name | $status | $secs |"$'\n'
    if [ "$rc" != 0 ]; then
        FAILED+=("$name")
        echo "[gpu_check] $name: $status (its output is in $RESULTS)" >&2
    fi
}

{
    printf '# GPU check, %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    if [ "$DRY" = 1 ]; then
        printf '**DRY RUN (GPU_CHECK_DRY=1): the same steps on the CPU at tiny sizes. These are not GPU figures.**\n\n'
    fi
    printf 'commit %s; `tools/gpu_check.sh`; python `%s`\n\n' \
        "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$PY"
} >"$RESULTS"

CHECK=""
LABEL="python: torch, CUDA and the GPUs; nvidia-smi"
step machine 30 "$PY" -c '
import os, platform, shutil, subprocess, sys
import torch
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA build {torch.version.cuda}), "
      f"{os.cpu_count()} CPU cores")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}")
    if shutil.which("nvidia-smi"):
        print(subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used",
                              "--format=csv"], capture_output=True, text=True, timeout=10).stdout.strip())
elif sys.argv[1] == "1":
    print("no CUDA device: dry run on the CPU")
else:
    sys.exit("no CUDA device visible to torch: this check needs one (GPU_CHECK_DRY=1 runs it on the CPU)")
' "$DRY"
LABEL=""
if [ "${#FAILED[@]}" != 0 ]; then  # no GPU: nothing else can pass
    cat "$RESULTS"
    echo "gpu_check: FAILED at step machine: no CUDA device, or no torch (see $RESULTS)" >&2
    exit 1
fi

# the tests marked `cuda` (pyproject.toml); only the files that use the marker are collected
mapfile -t CUDA_TEST_FILES < <(grep -lE '^\s*(@pytest\.mark\.cuda\b|pytestmark\b.*mark\.cuda\b)' tests/test_*.py)
if [ "$DRY" = 1 ]; then
    CHECK="grep -Eq '[0-9]+ passed' '$WORK/cuda-tests.log'"
else  # on a GPU nothing marked cuda may be skipped
    CHECK="grep -Eq '[0-9]+ passed' '$WORK/cuda-tests.log' && ! grep -Eq '[0-9]+ skipped' '$WORK/cuda-tests.log'"
fi
step cuda-tests 80 "$PY" -m pytest -q -ra -p no:cacheprovider -m cuda "${CUDA_TEST_FILES[@]}"

CHECK=""
step loss 120 "$PY" -m perco_viz bench loss --device "$DEVICE" "${LOSS_ARGS[@]}" --json "$WORK/loss.json"
step estimate 75 "$PY" -m perco_viz bench estimate --device "$DEVICE" "${ESTIMATE_ARGS[@]}" \
    --json "$WORK/estimate.json"
step epoch 140 "$PY" -m perco_viz bench epoch --device "$DEVICE" "${EPOCH_ARGS[@]}" --json "$WORK/epoch.json"

{
    printf '## summary\n\n| step | result | seconds |\n|---|---|---:|\n%s\n' "$SUMMARY"
    if [ "${#FAILED[@]}" = 0 ]; then
        printf 'All steps passed.\n'
    else
        printf 'FAILED steps: %s\n' "${FAILED[*]}"
    fi
} >>"$RESULTS"

cat "$RESULTS"
if [ "${#FAILED[@]}" != 0 ]; then
    echo "gpu_check: FAILED steps: ${FAILED[*]} (details in $RESULTS)" >&2
    exit 1
fi
