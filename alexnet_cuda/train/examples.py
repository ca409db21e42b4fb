"""The recipes at the end of ``python -m alexnet_cuda.train --help``, one per situation people bring to AlexNet (issue
10): a tiny two-class folder, an Oxford 17 Flowers-style folder with batch normalization and Adam, the Tiny
ImageNet variant table, and CIFAR-10 with cuda-convnet's layers-18pct and its schedule (issue 19). docs/training.md ("Recipes") shows the same commands (tests/train/test_train_examples.py checks
that it does, and that the trainer accepts every flag)."""

EXAMPLES = r"""recipes:

A tiny two-class folder (pets/cat/*.jpg and pets/dog/*.jpg, about 100 images, no train/ or val/): each class is
split 80/10/10 by the seed (the lists go to runs/pets/splits/), the small network trains on 64x64 crops of 72x72
images with a constant learning rate (a dozen validation images are too few for the plateau rule), and evaluate
scores the held-out test images afterwards:

  python -m alexnet_cuda.train --data pets --arch alexnet-small --input-size 64 --image-size 72 \
      --batch-size 16 --epochs 20 --lr-schedule none --out runs/pets
  python -m alexnet_cuda.evaluate --checkpoint runs/pets/best.npz --split test

Oxford 17 Flowers-style (flowers/<17 class folders>/*.jpg, 80 images each): the paper's network with batch
normalization in place of LRN, Adam in place of SGD, and pixel augmentation beside the paper's; the same 80/10/10
split per class:

  python -m alexnet_cuda.train --data flowers --norm batchnorm --optimizer adam --lr 0.001 --batch-size 64 \
      --epochs 60 --brightness 0.2 --contrast 0.2 --saturation 0.2 --out runs/flowers
  python -m alexnet_cuda.evaluate --checkpoint runs/flowers/best.npz --split test

Tiny ImageNet (tiny-imagenet-200/, with its own train and val splits): eight variants in one table, with one seed
and one budget (python -m alexnet_cuda.study). The flags after -- make the baseline (no random crop, no
reflections, no colour noise, no dropout); each variant adds its part, 'combined' adds them all:

  PIXELS='--brightness 0.2 --contrast 0.2 --saturation 0.2 --noise 0.02'
  ALL="--image-size 72 --flip $PIXELS --dropout 0.5 --norm batchnorm"
  python -m alexnet_cuda.study --data tiny-imagenet-200 --epochs 30 --out runs/tiny-study --variants baseline \
      --variant 'random-crop=--image-size 72 --flip' --variant "pixel-aug=$PIXELS" \
      --variant 'dropout=--dropout 0.5' --variant 'batchnorm=--norm batchnorm' --variant "combined=$ALL" \
      --variant "combined-head=$ALL --head 2000,200" --variant "combined-gap=$ALL --head gap" \
      -- --image-size 64 --no-flip --pca-std 0 --dropout 0

CIFAR-10 (cifar10/, 32x32 images) with the authors' own network, cuda-convnet's layers-18pct built in: the learning
rates, momenta and weight decays are its file's, per layer (--lr multiplies the rates), and the file's schedule is
120 epochs at those rates, then 10 at 1/10 and 10 at 1/100; the whole image, no reflections, as cuda-convnet:

  python -m alexnet_cuda.train --data cifar10 --arch layers-18pct --no-flip --epochs 140 \
      --lr-schedule epochs --lr-drop-at 120,130 --out runs/cifar10-layers-18pct
"""
