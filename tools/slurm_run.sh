#!/usr/bin/env bash
# Run a tool of this folder under Slurm, one task per GPU:
#   bash tools/slurm_run.sh PARTITION JOB_NAME TOOL.py [tool args]
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS as in MMDetection.
set -x
PARTITION=$1
JOB_NAME=$2
TOOL=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 $SRUN_ARGS \
    python -u "$(dirname "$0")/$TOOL" "${@:4}" --launcher=slurm
