#!/usr/bin/env bash
# Issue #5's GPU check through the device tool, in two calls on the same warm machine:
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=360)       default sections, ~5 min
#   run(command="bash benchmarks/gpu_session.sh paper_profile", carry=[".whl"], timeout_s=230)   batch 64, ~3 min
# With a 15-minute device budget and a few minutes to start the machine, the first call leaves room to rerun it
# once; the second is for what time is left.
# The device machines have torch, timm, pandas and matplotlib but no MLflow, which gpu_check's train_stage
# section needs: where `import mlflow` fails, the wheels in .whl/ are installed into /tmp/site (fetch them with
# `pip download -d .whl --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64
# --platform any mlflow-skinny==3.17.2 sqlalchemy alembic`, then delete what the machine already has).
# Writes the machine's description, the log, the JSON and the wall time into $OUT (./gpu_out without it).
# Arguments after the part go to gpu_check (`--smoke` tries it on a CPU).
set -u
part=default
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    part=$1
    shift
fi
case $part in
default) check=(--out "${OUT:-gpu_out}/gpu_check.json") limit=330 ;;
paper_profile) check=(--sections paper_profile --images 4096 --out "${OUT:-gpu_out}/paper_profile.json") limit=200 ;;
*)
    echo "usage: bash benchmarks/gpu_session.sh [default|paper_profile] [gpu_check options]" >&2
    exit 2
    ;;
esac
out=${OUT:-gpu_out}
mkdir -p "$out"
if ! python3 -c "import mlflow" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >/dev/null 2>&1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)'
    python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'timm', timm.__version__)"
    df -h /dev/shm | tail -1
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"
started=$SECONDS
timeout $limit python3 -W ignore::UserWarning benchmarks/gpu_check.py "${check[@]}" "$@" 2>&1 | tee "$out/$part.log"
echo "gpu_check, $part: $((SECONDS - started)) s" | tee -a "$out/machine.txt"
