#!/usr/bin/env bash
# Issue #5's GPU check as one call of the device tool (about 9 minutes on one H100; give it timeout_s 560):
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"])
# The device machines have torch, timm, pandas and matplotlib but no MLflow, which gpu_check's train_stage
# section needs: where `import mlflow` fails, the wheels in .whl/ are installed into /tmp/site (fetch them with
# `pip download -d .whl --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64
# --platform any mlflow-skinny==3.17.2 sqlalchemy alembic`, then delete what the machine already has).
# Writes the machine's description, both runs' logs and JSON into $OUT (./gpu_out without it). Extra arguments
# go to both gpu_check runs (`--smoke` tries the whole script on a CPU).
set -u
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
# The default sections within the 5 minutes; then the paper profile's batch of 64 (a second compile).
started=$SECONDS
timeout 330 python3 -W ignore::UserWarning benchmarks/gpu_check.py --out "$out/gpu_check.json" "$@" 2>&1 |
    tee "$out/gpu_check.log"
echo "gpu_check, default sections: $((SECONDS - started)) s" | tee -a "$out/machine.txt"
started=$SECONDS
timeout 200 python3 -W ignore::UserWarning benchmarks/gpu_check.py --sections paper_profile --images 4096 \
    --out "$out/paper_profile.json" "$@" 2>&1 | tee "$out/paper_profile.log"
echo "gpu_check, paper_profile: $((SECONDS - started)) s" | tee -a "$out/machine.txt"
