#!/usr/bin/env bash
# Issue 21's fine-tuning measurement, second attempt (the first pretraining's plateau schedule cut its rate after 7
# epochs at 25% validation top-1): torchvision-alexnet pretrained on imagenette-mini at a constant rate, exported in
# torchvision's format, then fine-tuned on ~100 CIFAR-10 cats and dogs against training from scratch on the same
# split, each at two rates (chosen on the validation split), scored on the held-out test split.
set -euo pipefail
export OMP_NUM_THREADS=1
PY=/work/venv-runs2/bin/python
cd /work/runs/finetune
step() { echo "+ $*"; local t0=$(date +%s); "$@"; echo "  wall $(( $(date +%s) - t0 )) s"; }
step $PY -m alexnet_cuda.train --data /work/shared/data/imagenette-mini --arch torchvision-alexnet --epochs 35 --batch-size 32 --lr 0.01 --lr-schedule none --out pre2 --no-progress
step $PY -m alexnet_cuda.evaluate --checkpoint pre2/best.npz
step $PY -m alexnet_cuda.weights export pre2/best.npz --safetensors pre2.safetensors
SPLIT="--val-fraction 0.1 --test-fraction 0.5 --split-seed 0 --epochs 20 --batch-size 16 --lr-schedule none --no-progress"
for lr in 0.001 0.01; do
  step $PY -m alexnet_cuda.train --data pets --init-from pre2.safetensors --lr $lr $SPLIT --out ft-lr$lr
  step $PY -m alexnet_cuda.train --data pets --arch torchvision-alexnet --lr $lr $SPLIT --out scratch-lr$lr
done
for r in ft-lr0.001 ft-lr0.01 scratch-lr0.001 scratch-lr0.01; do
  step $PY -m alexnet_cuda.evaluate --checkpoint $r/best.npz --split test
done
