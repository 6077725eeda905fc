#!/bin/bash
# Workers for one policysearch study on a Slurm cluster: one worker per array task and GPU.
# One `make search` creates the study (it stores the config, space and baselines), runs trials
# itself, and re-evaluates and exports the winner once the budget is done:
#   make search DATASET=cifar10 STORAGE=$STORAGE STUDY=cifar10-team TRIALS=200
# the array adds workers to it (each waits up to 30 min for the search to create the study):
#   sbatch --array=0-7 experiments/slurm_workers.sh
#SBATCH --job-name=policysearch-worker
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --output=runs/slurm-%A_%a.out
set -euo pipefail
: "${STORAGE:?set STORAGE=postgresql://user@host/db}"
: "${STUDY:?set STUDY=<study name>}"
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI=http://tracking-host:5000}"
export KERAS_BACKEND="${KERAS_BACKEND:-jax}"
cd "${SLURM_SUBMIT_DIR:-.}"
exec .venv/bin/policysearch worker --study-name "$STUDY" --storage "$STORAGE" \
    --tracking-uri "$MLFLOW_TRACKING_URI" --wait-for-study 1800 --worker-id "slurm-${SLURM_ARRAY_JOB_ID:-0}-${SLURM_ARRAY_TASK_ID:-0}"
