#!/usr/bin/env bash
# Issue #5's GPU check through the device tool, in two calls on the same warm machine, after the MLflow client that
# gpu_check's train_stage section needs is installed there (the machines lack it). Fetch the wheels the machines
# lack here with `python benchmarks/device_wheels.py` (.whl/1 and .whl/2, each small enough for one call), then:
#   run(command="bash benchmarks/gpu_rehearsal.sh install", carry=[".whl/1"], timeout_s=120)
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl/2"], timeout_s=360)       default sections, ~5 min
#   run(command="bash benchmarks/gpu_session.sh paper_profile", timeout_s=230)            batch 64, ~3 min
# Where `import mlflow` fails, the wheels carried are installed into /tmp/site beside the first part's, which the
# machine keeps while it is warm. With a 15-minute device budget and a few minutes to start the machine, the second
# call leaves room to rerun it once; the third is for what time is left.
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
if ! python3 -c "import mlflow" 2>/dev/null && compgen -G ".whl/*/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*/*.whl >/dev/null 2>&1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
{
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)'
    python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'timm', timm.__version__)"
    df -h /dev/shm | tail -1
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"
started=$SECONDS
timeout $limit python3 -W ignore::UserWarning benchmarks/gpu_check.py "${check[@]}" "$@" 2>&1 | tee "$out/$part.log"
echo "gpu_check, $part: $((SECONDS - started)) s" | tee -a "$out/machine.txt"
