#!/usr/bin/env bash
# conv-local without (13pct) and with (11pct) normalization at one equal budget, one after the other, 2 threads.
set -u
source /work/venv-r3/bin/activate
cd /work/runs
E=${EPOCHS:-20}; D=${DROPS:-16,18}
for net in conv-local-13pct conv-local-11pct; do
  OMP_NUM_THREADS=2 /usr/bin/time -v python -m alexnet_cuda.train --data /work/shared/data/cifar10 --arch $net \
    --epochs $E --lr-schedule epochs --lr-drop-at $D --eval-every 4 --no-progress \
    --out /work/runs/cifar10-$net-${E}ep > /work/runs/$net-${E}ep.log 2>&1
done
