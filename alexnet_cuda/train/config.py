"""The settings of a training run: :class:`TrainConfig`, the defaults that depend on the dataset and the architecture
(``RECIPES``), filling them in and checking them (:func:`resolve`), and the command-line flags of
``python -m alexnet_cuda.train``, which map one to one onto the fields (:func:`build_parser`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from ..arguments import FLOAT32_MAX
from ..cli import ConfigError, add_debug_flag, float_in, gpu_list, int_at_least
from ..console import log
from ..data.datasets import LAYOUTS, _detect, is_unsplit_folder, open_dataset, typical_image_side
from ..data.synthetic import SYNTHETIC_TRAIN_IMAGES
from ..nets.torchvision import NAME as TORCHVISION_ALEXNET
from ..nets.torchvision import RESIZE as TORCHVISION_RESIZE
from ..network_options import ADAM_DEFAULT_LR, DEFAULT_ADAM_BETAS, DEFAULT_ADAM_EPS, add_variant_flags
from .described import BUILTIN_ARCHS, is_described, resolve_described
from .examples import EXAMPLES

PROG = "python -m alexnet_cuda.train"
DATASETS = ("synthetic", "folder", "imagenet", "cifar10", "tinyimagenet")
ARCHS = ("alexnet", "alexnet-small")  # AlexNet's constructor; the built-in descriptions are BUILTIN_ARCHS
SCHEDULES = ("plateau", "step", "epochs", "cosine", "none")

# Defaults that depend on the data. Synthetic / CIFAR-10: the small network on random 32x32 crops of 36x36 images
# (the paper's 227-of-256 crop, scaled down). Tiny ImageNet: 64x64 crops of 72x72. Image folders and ImageNet: the
# paper's network, 227x227 crops of 256x256.
SMALL_DATA_IMAGE_SIZE = {32: 36, 64: 72}
# A folder whose images are at most this side is trained with alexnet-small unless --arch says otherwise.
SMALL_IMAGES = 96
DEFAULT_EPOCHS = {"synthetic": 5, "cifar10": 40, "tinyimagenet": 40, "folder": 90, "imagenet": 90}
# Per-architecture defaults of the settings left at None.
# alexnet: the paper's recipe (Section 5): batch 128, learning rate 0.01, weights N(0, 0.01^2), biases 1 in conv2,
#   conv4, conv5, fc6, fc7, raw 0..255 pixels minus the mean image.
# alexnet-small: a recipe for short runs on small images (minutes on a CPU). With the paper's initialization the
#   input signal shrinks about a thousandfold on its way through the seven weight layers before fc8 (std 0.01 times
#   sqrt(fan-in) is 0.3..0.5 per layer), so the network starts out predicting a constant and needs many epochs
#   before the loss moves. Weights N(0, 0.03^2) are close to He et al.'s sqrt(2 / fan-in) for conv2..fc8; the
#   inputs are scaled so that conv1's responses start at unit standard deviation (input_scale 'auto', see
#   train.auto_input_scale); biases 0.1 (as in Caffe's AlexNet) instead of 1, which with these weights saturates the
#   softmax at the start. Tuned on the synthetic dataset on a 2-core CPU.
RECIPES = {
    "alexnet": {"batch_size": 128, "lr": 0.01, "weight_std": 0.01, "bias_init": 1.0, "input_scale": 1.0},
    "alexnet-small": {"batch_size": 32, "lr": 0.01, "weight_std": 0.03, "bias_init": 0.1, "input_scale": "auto"},
}
# A folder of class folders without train/ and val/ is split per class: this fraction of each class validates and
# this one is held out for testing (evaluate --split test), the rest trains.
DEFAULT_SPLIT = {"val_fraction": 0.1, "test_fraction": 0.1}
# The built-in synthetic dataset: 10 classes, this many training / validation images, and its batch size. The
# default run (python -m alexnet_cuda.train) is a newcomer's first command and should take under 3 minutes on two
# CPU cores: batches of 16 learn more per image than 32 here (validation top-1 after 5120 images: 50% vs 43%) at
# the same cost per image on the CPU. 5 epochs (DEFAULT_EPOCHS) reach 91% validation top-1 with 2 threads (87%
# after 4), in about 25 s per epoch on two free cores.
SYNTHETIC_BATCH_SIZE = 16
# The paper's optimisation and colour augmentation (Sections 4.1, 5), for the alexnet family's settings left at None
# (a described network's are in described.py).
ALEXNET_DEFAULTS = {"activation": "relu", "momentum": 0.9, "weight_decay": 5e-4, "pca_std": 0.1}


@dataclass
class TrainConfig:
    """Every setting of a training run. ``None`` means "the default for this dataset / device" (see :func:`resolve`).

    The command-line flags map one to one onto these fields (``--batch-size`` -> ``batch_size``).
    """

    # data
    data: str | None = None                # a dataset directory; None: the built-in synthetic dataset
    dataset: str | None = None             # synthetic|folder|imagenet|cifar10|tinyimagenet; None: detected
    image_size: int | None = None          # stored image side S (random crops are taken from S x S images)
    synthetic_classes: int = 10
    synthetic_images: int | None = None    # synthetic training images (validation: about a fifth)
    stats_images: int | None = 10000       # images used for the mean image and the RGB PCA (None: all)
    workers: int | None = None             # data-loading workers (None: the loader's default)
    # splits of a folder of class folders without train/ and val/ (data/splits.py); other layouts keep their own
    val_fraction: float | None = None      # None: 0.1 (DEFAULT_SPLIT)
    test_fraction: float | None = None     # None: 0.1
    split_seed: int | None = None          # None: the run's --seed
    val_on_train: bool = False             # validate on the training images (asked for explicitly, said loudly)
    # augmentation beside the crops and PCA colour noise (paper Section 4.1): data/jitter.py, 0 = off
    flip: bool = True                      # Section 4.1's horizontal reflections
    crops: str = "random"                  # training crops: random (Section 4.1) or the centre one (fixed patches)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    noise: float = 0.0
    # model
    arch: str | None = None                # alexnet|alexnet-small|a built-in description; None: by dataset
    net: str | None = None                 # a network file (the project's, or cuda-convnet's layers-*.cfg)
    net_params: str | None = None          # cuda-convnet's layer-params-*.cfg for a layers-*.cfg --net
    description: str | None = None         # the described network's file text (resolve fills it; resume reads it)
    input_size: int | None = None          # network input (crop) side; None: 227 (alexnet), 32 or 64 (small)
    init_from: str | None = None           # fine-tune from this checkpoint or weights file (train/init_from.py)
    lrn: bool = True
    overlapping_pool: bool = True
    activation: str | None = None          # None: relu (alexnet), the description's own (a described network)
    dropout: float = 0.5
    towers: int = 2
    weight_std: float | None = None        # None: the arch's recipe (RECIPES)
    bias_init: float | None = None
    input_scale: float | None = None       # (pixel - mean) * input_scale; None: the arch's recipe
    widths: dict | None = None             # layer-width override of AlexNet (tiny nets in tests); no flag
    norm: str = "lrn"                      # lrn|batchnorm|none (issue 10 variants: network_options.py)
    bn_position: str = "before_pool"
    head: str | list[int] | None = None    # 'gap' or hidden fc widths; None: the arch's
    optimizer: str = "sgd"                 # sgd|adam|adamw
    adam_betas: list[float] = dataclasses.field(default_factory=lambda: list(DEFAULT_ADAM_BETAS))  # a list: JSON
    adam_eps: float = DEFAULT_ADAM_EPS
    # optimisation (paper Section 5)
    epochs: int | None = None
    batch_size: int | None = None          # None: 128 (the paper) for alexnet, see RECIPES
    lr: float | None = None
    momentum: float | None = None          # None: 0.9 (described nets: for layers without their own)
    weight_decay: float | None = None      # None: 0.0005 (likewise)
    lr_schedule: str = "plateau"
    stop_train_error: float | None = None  # end the run after the first epoch with at most this training error
    lr_patience: int = 2                   # plateau: epochs without a better validation error before dividing
    lr_step_epochs: int = 30               # step: divide the learning rate by 10 every this many epochs
    lr_drops: int = 3                      # divide at most this many times (the paper: three times)
    lr_drop_at: list[int] | None = None    # epochs: divide by 10 after each of these epochs
    pca_std: float | None = None           # Section 4.1's colour augmentation (0 turns it off); None: 0.1, but 0
                                           # for cuda-convnet's networks (described.py)
    # run
    device: str = "auto"                   # auto|cpu|cuda
    gpus: list[int] | None = None          # GPU ids, e.g. [0, 1]; the towers are spread over them
    seed: int = 0
    out: str | None = None                 # run directory; None: runs/<dataset>-<arch>-<time>
    resume: bool = False
    eval_every: int = 1
    save_every: int = 0                    # also save last.npz every this many steps (0: only at epoch ends)
    train_batches: int | None = None       # cap on training batches per epoch (smoke tests)
    val_batches: int | None = None         # cap on validation batches (smoke tests)
    progress: bool = True


# Settings a resumed run may change; every other setting comes from the checkpoint, so the run continues exactly.
RESUME_OVERRIDES = ("device", "gpus", "workers", "progress", "out", "resume")
RESUME_OVERRIDES_IF_SET = ("epochs",)


# --------------------------------------------------------------------------------------------------------------------
# Resolving defaults
# --------------------------------------------------------------------------------------------------------------------

def detect_dataset(path: Path) -> str:
    """Which kind of dataset directory ``path`` is (for choosing the defaults); 'folder' when unrecognised (opening
    it then fails with the data package's explanation)."""
    kind = _detect(str(path.resolve()), "train")  # the data package's own detector: one set of rules
    return kind if kind in DATASETS else "folder"


def resolve(config: TrainConfig) -> TrainConfig:
    """Fills in the settings left at None from the dataset and checks the combination. Raises ConfigError."""
    c = dataclasses.replace(config)
    if c.data is None:
        if c.dataset not in (None, "synthetic"):
            raise ConfigError(f"--dataset {c.dataset} needs --data DIR (only the synthetic dataset is built in)")
        c.dataset = "synthetic"
    else:
        path = Path(c.data).expanduser()
        if not path.exists():
            raise ConfigError(f"--data {c.data}: no such directory")
        if not path.is_dir():
            raise ConfigError(f"--data {c.data}: not a directory")
        c.data = str(path.resolve())  # checkpoints record where the data was, for evaluate and --resume
        if c.dataset is None or c.dataset == "auto":
            c.dataset = detect_dataset(path)
    if c.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {c.dataset!r} (choose from {', '.join(DATASETS)})")
    if c.init_from is not None and not c.resume:  # (a resumed run's settings are complete: the file is not read)
        from .init_from import apply_defaults

        apply_defaults(c)  # the architecture of the file's network
    if c.arch == TORCHVISION_ALEXNET and c.image_size is None:
        c.image_size = TORCHVISION_RESIZE  # torchvision's preprocessing: the shorter side to 256, the centre 224
    if is_described(c):
        resolve_described(c, _small_images(c) if c.dataset in ("folder", "imagenet") else None)
    else:
        _resolve_alexnet(c)
    if c.image_size < c.input_size:
        raise ConfigError(f"--image-size {c.image_size} is smaller than the network input {c.input_size}")
    if c.epochs is None:
        c.epochs = DEFAULT_EPOCHS[c.dataset]
    c.adam_betas = [float(b) for b in c.adam_betas]  # as the checkpoint's JSON gives them back
    if c.dataset == "synthetic" and c.synthetic_images is None:
        c.synthetic_images = SYNTHETIC_TRAIN_IMAGES
    resolve_split(c)
    _resolve_schedule(c)
    if c.out is None:
        c.out = str(Path("runs") / f"{c.dataset}-{c.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_memory(c)
    if Path(c.out).exists() and not Path(c.out).is_dir():
        raise ConfigError(f"--out {c.out}: exists and is not a directory (the run directory holds the checkpoints "
                          f"and logs)")
    return c


def _resolve_alexnet(c: TrainConfig) -> None:
    """The settings of AlexNet's own family (alexnet, alexnet-small and the variant flags): the arch by the data,
    then its recipe (RECIPES)."""
    small_data = c.dataset in ("synthetic", "cifar10", "tinyimagenet")
    side = _small_images(c) if c.dataset in ("folder", "imagenet") else None
    if c.arch is None:
        c.arch = "alexnet-small" if small_data or side else "alexnet"
        if side:
            c.input_size = c.input_size or (64 if side >= 64 else 32)
            log(f"the images of --data {c.data} are about {side}x{side}: training alexnet-small on "
                f"{c.input_size}x{c.input_size} crops (--arch alexnet trains the paper's 227x227 network on them "
                f"upscaled)")
    elif side and c.arch == "alexnet":
        log(f"WARNING: the images of --data {c.data} are about {side}x{side}; --arch alexnet upscales them to "
            f"{c.image_size or 256} and takes 227x227 crops (--arch alexnet-small is made for 32x32 and 64x64 images)")
    if c.arch not in ARCHS:
        raise ConfigError(f"unknown arch {c.arch!r} (choose from {', '.join(ARCHS + BUILTIN_ARCHS)})")
    if c.input_size is None:
        c.input_size = 227 if c.arch == "alexnet" else (64 if c.dataset == "tinyimagenet" else 32)
    if c.image_size is None:
        c.image_size = 256 if c.arch == "alexnet" else SMALL_DATA_IMAGE_SIZE.get(c.input_size, c.input_size + 8)
    if c.lr is None and c.optimizer in ("adam", "adamw"):
        c.lr = ADAM_DEFAULT_LR
    if c.dataset == "synthetic" and c.arch == "alexnet-small" and c.batch_size is None:
        c.batch_size = SYNTHETIC_BATCH_SIZE
    for key, value in RECIPES[c.arch].items():
        if getattr(c, key) is None and value != "auto":
            setattr(c, key, value)
    for key, value in ALEXNET_DEFAULTS.items():
        if getattr(c, key) is None:
            setattr(c, key, value)


def _resolve_schedule(c: TrainConfig) -> None:
    if c.lr_schedule not in SCHEDULES:
        raise ConfigError(f"unknown --lr-schedule {c.lr_schedule!r} (choose from {', '.join(SCHEDULES)})")
    if c.lr_schedule == "epochs":
        if not c.lr_drop_at:
            raise ConfigError("--lr-schedule epochs needs --lr-drop-at EPOCHS (e.g. 120,130: divide the learning "
                              "rate by 10 after epoch 120 and again after epoch 130)")
        c.lr_drop_at = sorted(int(e) for e in c.lr_drop_at)
    elif c.lr_drop_at:
        raise ConfigError(f"--lr-drop-at applies to --lr-schedule epochs (the schedule is {c.lr_schedule})")


def _small_images(c: TrainConfig) -> int | None:
    """The typical side of the training images of a folder dataset when it is small enough for alexnet-small (at
    most SMALL_IMAGES), else None: a folder of CIFAR-sized images is never silently trained at 227x227."""
    try:
        dataset = open_dataset(c.data, kind=c.dataset, split="train")
    except (OSError, ValueError):
        return None  # opening it later says what is wrong
    side = typical_image_side(dataset)
    return side if side is not None and side <= SMALL_IMAGES else None


def resolve_split(c: TrainConfig) -> None:
    """The split fractions and seed, which only a folder of class folders without train/ and val/ uses: given for a
    dataset with its own splits they are refused rather than silently ignored."""

    split_flags = {"--val-fraction": c.val_fraction, "--test-fraction": c.test_fraction,
                   "--split-seed": c.split_seed}
    if c.dataset not in ("folder", "imagenet") or not is_unsplit_folder(c.data):
        given = [flag for flag, value in split_flags.items() if value is not None]
        if given:
            raise ConfigError(f"{given[0]} applies only to a folder of class folders without train/ and val/; "
                              f"{c.data or 'the synthetic dataset'} has its own splits")
        return
    if c.val_on_train and c.val_fraction:
        raise ConfigError("--val-on-train validates on the training images; it cannot be combined with "
                          "--val-fraction")
    if c.val_fraction is None:
        c.val_fraction = 0.0 if c.val_on_train else DEFAULT_SPLIT["val_fraction"]
    if c.test_fraction is None:
        c.test_fraction = DEFAULT_SPLIT["test_fraction"]
    if c.val_fraction == 0 and not c.val_on_train:
        raise ConfigError("--val-fraction 0 leaves no validation images; pass --val-on-train to validate on the "
                          "training images (and be told so)")
    if c.val_fraction + c.test_fraction >= 1.0:
        raise ConfigError(f"--val-fraction {c.val_fraction:g} plus --test-fraction {c.test_fraction:g} leave no "
                          f"training images (their sum must be below 1)")
    if c.split_seed is None:
        c.split_seed = c.seed


def check_memory(c: TrainConfig) -> None:
    """Refuses sizes that cannot fit in this machine's memory before any data is read, where they would otherwise
    end in a MemoryError minutes later. A rough lower bound: the loader keeps about 4 batches of uint8 images in
    flight, the mean image and the colour statistics are summed in float64, and each epoch's order of the synthetic
    training set is an int64 per image."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on Linux/macOS: the MemoryError itself will tell
        return
    image = 3 * c.image_size ** 2
    need = 4 * c.batch_size * image + 2 * 8 * image + 8 * (c.synthetic_images or 0)
    if need > physical:
        raise ConfigError(f"--batch-size {c.batch_size} with --image-size {c.image_size}"
                          f"{f' and --synthetic-images {c.synthetic_images}' if c.synthetic_images else ''} needs "
                          f"at least {need / 2**30:.1f} GiB of memory, more than this machine has "
                          f"({physical / 2**30:.1f} GiB)")


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------

def _recipe_default(key: str) -> str:
    big, small = RECIPES["alexnet"][key], RECIPES["alexnet-small"][key]
    if big == small:
        return f"default {big:g}"
    small = small if isinstance(small, str) else f"{small:g}"
    return f"default {big:g} for alexnet (the paper), {small} for alexnet-small"


def _epoch_list(text: str) -> list[int]:
    try:
        epochs = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 120,130, got {text!r}") from None
    if not epochs or any(e < 1 for e in epochs):
        raise argparse.ArgumentTypeError(f"expected epochs (at least 1) like 120,130, got {text!r}")
    return epochs


def _layouts() -> str:
    return str(LAYOUTS)


def build_parser() -> argparse.ArgumentParser:
    wrap = functools.partial(textwrap.fill, width=100)
    p = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=wrap("Train AlexNet (Krizhevsky, Sutskever, Hinton 2012). With no arguments: a small AlexNet on "
                         "the built-in synthetic dataset (no download), on the GPUs if any, else on the CPU."),
        epilog=(f"--data: {_layouts()}\n\n" if _layouts() else "") + wrap(
            "Outputs in --out: last.npz and best.npz (checkpoints), metrics.jsonl (per epoch), steps.jsonl (per "
            "step), mean.npy and pca.npz (input statistics). Ctrl-C saves a checkpoint and stops; --resume --out "
            "DIR continues exactly (only --epochs, --device, --gpus and --workers may change).") + "\n\n" + EXAMPLES)
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", help="dataset directory (default: the built-in synthetic dataset)")
    g.add_argument("--dataset", choices=DATASETS, help="dataset kind (default: detected from --data)")
    g.add_argument("--image-size", type=int_at_least(1), metavar="S",
                   help="stored image side; random crops of the network's input size are taken from S x S images "
                        "(default 256 for alexnet, 36 for alexnet-small at 32, 72 at 64)")
    g.add_argument("--synthetic-images", type=int_at_least(1), metavar="N",
                   help=f"synthetic training images (default {SYNTHETIC_TRAIN_IMAGES})")
    g.add_argument("--synthetic-classes", type=int_at_least(2), default=10, metavar="K",
                   help="synthetic classes (default 10)")
    g.add_argument("--stats-images", type=int_at_least(1), default=10000, metavar="N",
                   help="images used for the mean image and the colour PCA (default 10000)")
    g.add_argument("--workers", type=int_at_least(0), help="data-loading workers (default: the loader's choice)")
    _add_split_flags(p)
    _add_augmentation_flags(p)
    g = p.add_argument_group("network (paper Section 3; the switches are the paper's ablations)")
    g.add_argument("--arch", choices=ARCHS + BUILTIN_ARCHS,
                   help="alexnet: the paper's network, 227x227 inputs; alexnet-small: the same design for 32x32 or "
                        "64x64 inputs (default: alexnet-small for synthetic, cifar10, tinyimagenet and a folder whose "
                        "images are at most 96x96, which the log says; alexnet otherwise). The others are the "
                        "authors' CIFAR-10 networks, cuda-convnet's layer files built in (docs/cuda_convnet.md): "
                        "layers-18pct/19pct/80sec take the whole 32x32 image, conv-local-11pct/13pct 24x24 crops; "
                        "torchvision-alexnet is torchvision.models.alexnet, 224x224 crops of 256x256 images with "
                        "ImageNet's mean and std (docs/weights.md). With --init-from: the file's network")
    g.add_argument("--net", metavar="FILE",
                   help="train the network a file describes instead of --arch: the project's format "
                        "(docs/network_format.md), or cuda-convnet's layers-*.cfg with --net-params. The switches "
                        "below edit the paper's AlexNet and are refused with --net or a built-in description, "
                        "except --activation")
    g.add_argument("--net-params", metavar="FILE",
                   help="cuda-convnet's layer-params-*.cfg for a layers-*.cfg --net: its per-layer epsW, epsB, momW, "
                        "momB, wc are the run's learning settings (see --lr); its inputs are --input-size (default 32)")
    g.add_argument("--init-from", metavar="FILE",
                   help="fine-tune: start from the weights of FILE, a checkpoint or a weights file that 'python -m "
                        "alexnet_cuda.weights import' takes (torchvision's AlexNet .pth, a .safetensors); its "
                        "architecture and input normalization are kept; when its class count differs from the data's, "
                        "the last layer is replaced by a fresh one (the log says so)")
    g.add_argument("--input-size", type=int_at_least(1), metavar="N",
                   help="network input side (default 227 for alexnet; 32, or 64 for tinyimagenet, for alexnet-small; "
                        "a description's own, which cuda-convnet's files and the built-ins let this change)")
    g.add_argument("--no-lrn", dest="lrn", action="store_false", help="no local response normalization (3.3)")
    g.add_argument("--no-overlap-pool", dest="overlapping_pool", action="store_false",
                   help="2x2 stride-2 pooling instead of the overlapping 3x3 stride-2 (3.4)")
    g.add_argument("--activation", choices=("relu", "tanh"),
                   help="activation (3.1; default relu). With --net or a built-in description: replaces every relu "
                        "and tanh activation of the description (Figure 1: --arch conv-local-13pct --activation tanh)")
    g.add_argument("--dropout", type=float_in(0.0, 1.0), default=0.5, metavar="P",
                   help="dropout probability after every hidden fully connected layer (4.2; default 0.5)")
    g.add_argument("--towers", type=int, choices=(1, 2), default=2,
                   help="2: the paper's two-GPU split with cross-tower connections only in layers 3, 6, 7, 8 "
                        "(3.2); 1: a single column (default 2)")
    g.add_argument("--weight-std", type=float_in(0.0, lo_open=True), metavar="STD",
                   help=f"initial weight standard deviation (5; {_recipe_default('weight_std')})")
    g.add_argument("--bias-init", type=float_in(-FLOAT32_MAX), metavar="B",
                   help=f"initial bias of conv 2, 4, 5 and the hidden fully connected layers (5; "
                        f"{_recipe_default('bias_init')})")
    g.add_argument("--input-scale", type=float_in(0.0, lo_open=True), metavar="X",
                   help=f"the network sees (pixel - mean image) * X ({_recipe_default('input_scale')}, 'auto' "
                        f"being the factor that gives conv1's responses unit standard deviation at the start)")
    g = p.add_argument_group("optimisation (paper Section 5)")
    g.add_argument("--epochs", type=int_at_least(1),
                   help=f"passes over the training set (default: {DEFAULT_EPOCHS['synthetic']} for synthetic, 90 for "
                        f"ImageNet and folders, 40 for cifar10 / tinyimagenet)")
    g.add_argument("--batch-size", type=int_at_least(1), metavar="N",
                   help=f"{_recipe_default('batch_size')}; {SYNTHETIC_BATCH_SIZE} for alexnet-small on the synthetic data")
    g.add_argument("--lr", type=float_in(0.0, lo_open=True),
                   help=f"learning rate ({_recipe_default('lr')}). A described network's layers may set their own "
                        f"rates (lr_weight / lr_bias; cuda-convnet's epsW / epsB): --lr then multiplies them, "
                        f"default 1.0 when every weight layer sets both (the file's rates are the run's), else 0.01")
    g.add_argument("--momentum", type=float_in(0.0, 1.0),
                   help="default 0.9; for a described network, the momentum of the layers that do not set their own "
                        "(refused when every weight layer sets its own)")
    g.add_argument("--weight-decay", type=float_in(0.0),
                   help="default 0.0005; for a described network, the weight decay of the layers that do not set "
                        "their own (refused when every weight layer sets its own)")
    g.add_argument("--lr-schedule", choices=SCHEDULES, default="plateau",
                   help="plateau: divide the learning rate by 10 when the validation error stops improving (the "
                        "paper's rule); step: every --lr-step-epochs; epochs: after each epoch of --lr-drop-at; "
                        "cosine: from --lr down to 0 over --epochs along half a cosine, by epochs (faster for short "
                        "runs); none: constant (default plateau)")
    g.add_argument("--lr-drop-at", type=_epoch_list, metavar="EPOCHS",
                   help="epochs: divide the learning rate by 10 after each of these epochs, e.g. 120,130 (layers-"
                        "18pct's published schedule: 120 epochs at the file's rates, 10 at 1/10, 10 at 1/100)")
    g.add_argument("--stop-at-train-error", dest="stop_train_error", type=float_in(0.0, 1.0, hi_closed=True), metavar="E",
                   help="end the run after the first epoch whose running training error (the mean over the epoch's "
                        "mini-batches, as cuda-convnet printed it) is at most E (Figure 1's 25%%: 0.25); a resumed "
                        "run that already reached it trains no further; not with data-parallel ranks")
    g.add_argument("--lr-patience", type=int_at_least(1), default=2, metavar="N",
                   help="plateau: evaluations without improvement before dividing (default 2)")
    g.add_argument("--lr-step-epochs", type=int_at_least(1), default=30, metavar="N", help="step: default 30")
    g.add_argument("--lr-drops", type=int_at_least(0), default=3, metavar="N",
                   help="divide the learning rate at most N times (default 3, as in the paper)")
    g.add_argument("--pca-std", type=float_in(0.0), metavar="STD",
                   help="colour augmentation strength (4.1; 0 turns it off; default 0.1, but 0 for cuda-convnet's "
                        "networks, whose CIFAR-10 inputs had none)")
    g = p.add_argument_group("run")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: the GPUs when there are any, else the CPU (default auto)")
    g.add_argument("--gpus", type=gpu_list, metavar="IDS",
                   help="GPU ids for the towers, e.g. 0,1 (default: the first two; one GPU holds both towers)")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, shuffling and augmentation (default 0)")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/<dataset>-<arch>-<time>); the run locks "
                                                "it (DIR/.lock) while it lasts, so a second run into it refuses")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last.npz")
    g.add_argument("--eval-every", type=int_at_least(1), default=1, metavar="N",
                   help="validate every N epochs (and after the last; default 1)")
    g.add_argument("--save-every", type=int_at_least(0), default=0, metavar="STEPS",
                   help="also save last.npz every this many steps (default 0: at the end of each epoch)")
    g.add_argument("--train-batches", type=int_at_least(1), metavar="N",
                   help="train on at most N batches per epoch (quick checks)")
    g.add_argument("--val-batches", type=int_at_least(1), metavar="N",
                   help="validate on at most N batches (quick checks)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_debug_flag(g)
    add_variant_flags(p)
    return p


def _add_split_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "splits (only for a --data folder of class folders without train/ and val/; other layouts keep their own)",
        textwrap.fill("Each class is split by --split-seed into training, validation and test images; the file lists "
                      "are written to OUT/splits/ and reused by --resume and by evaluate --split test.", width=100))
    g.add_argument("--val-fraction", type=float_in(0.0, 1.0), metavar="F",
                   help=f"fraction of each class to validate on (default {DEFAULT_SPLIT['val_fraction']:g})")
    g.add_argument("--test-fraction", type=float_in(0.0, 1.0), metavar="F",
                   help=f"fraction of each class held out for the test split (default "
                        f"{DEFAULT_SPLIT['test_fraction']:g})")
    g.add_argument("--split-seed", type=int, metavar="N",
                   help="seed of the split (default: --seed; fix it to compare training seeds on one split)")
    g.add_argument("--val-on-train", action="store_true",
                   help="validate on the training images (any layout): the validation accuracy then measures "
                        "memorisation, and the log says so")


def _add_augmentation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "pixel augmentation (beside the paper's crops, reflections and --pca-std colour noise; 0 = off)",
        textwrap.fill("Applied per image to the uint8 S x S images, in this order: brightness, contrast, saturation, "
                      "noise; each draw comes from the seeded augmentation stream (--resume stays exact).",
                      width=100))
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="random horizontal reflections (4.1; default on, but never for data whose classes are not "
                        "mirror-invariant, such as the built-in synthetic set; --no-flip turns them off)")
    g.add_argument("--crops", choices=("random", "centre"), default="random",
                   help="training crops: random ones (4.1, the default) or every image's centre patch, the same at "
                        "every epoch (Figure 1's fixed patches; validation always takes the centre)")
    g.add_argument("--brightness", type=float_in(0.0, 1.0), default=0.0, metavar="S",
                   help="multiply each image by a factor uniform in [1-S, 1+S]")
    g.add_argument("--contrast", type=float_in(0.0, 1.0), default=0.0, metavar="S",
                   help="scale each image's deviation from its mean gray level by a factor in [1-S, 1+S]")
    g.add_argument("--saturation", type=float_in(0.0, 1.0), default=0.0, metavar="S",
                   help="scale each pixel's deviation from its gray level by a factor in [1-S, 1+S]")
    g.add_argument("--noise", type=float_in(0.0, 1.0), default=0.0, metavar="S",
                   help="add Gaussian noise of standard deviation S x 255 to every pixel and channel")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})

