#!/usr/bin/env bash
# Run a tool of this folder on NUM_PROCS processes with torchrun:
#   bash tools/dist_run.sh TOOL.py NUM_PROCS [tool args]
# NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON as in MMDetection.
set -e
TOOL=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/$TOOL" "${@:3}" --launcher pytorch
