#!/usr/bin/env bash
# Distributed training with torchrun: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args]
# NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON as in MMDetection (see dist_run.sh).
exec bash "$(dirname "$0")/dist_run.sh" train.py "$2" "$1" "${@:3}"
