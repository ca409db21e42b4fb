"""Dataset layouts, image conversion and preprocessing, bad data, the synthetic set, the mini ImageNet subset.

Every layout is checked on a tiny fixture written into tmp_path (a few JPEG/PNG files, a fake CIFAR-10 pickle
and binary set, a Tiny ImageNet tree, a flat ILSVRC-style validation folder with a labels file).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet_cuda.data import BadImage, Dataset, load_image_file, open_dataset, synthetic_dataset
from alexnet_cuda.data.cifar10 import safe_unpickle

WNIDS = ["n01440764", "n02102040", "n02979186"]
NAMES = ["tench", "English springer", "cassette player"]


def solid(colour, size=(40, 30), mode="RGB"):
    return Image.new(mode, size, colour)


def write_folder_split(root: Path, split: str, per_class: int, ext=".JPEG", classes=WNIDS):
    for c, wnid in enumerate(classes):
        d = root / split / wnid
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            img = solid((40 * c + 10, 5 * k, 200 - 40 * c), size=(48 + 4 * k, 36))
            img.save(d / f"{wnid}_{k}{ext}", quality=95)


@pytest.fixture
def folder_root(tmp_path):
    write_folder_split(tmp_path, "train", 4)
    write_folder_split(tmp_path, "val", 2, ext=".png")
    (tmp_path / "classes.txt").write_text("".join(f"{w}\t{n}\n" for w, n in zip(WNIDS, NAMES)))
    return tmp_path


def colour_at_centre(img: np.ndarray) -> np.ndarray:
    s = img.shape[0]
    return img[s // 2, s // 2].astype(int)


# ------------------------------------------------------------------------------------------ folder layout


def test_folder_layout_with_classes_txt(folder_root):
    train = open_dataset(folder_root, split="train", image_size=16)
    assert isinstance(train, Dataset)
    assert len(train) == 12 and train.image_size == 16
    assert train.class_ids == WNIDS and train.classes == NAMES
    assert [train.label(i) for i in range(len(train))] == [0] * 4 + [1] * 4 + [2] * 4
    img = train.load(5)
    assert img.dtype == np.uint8 and img.shape == (16, 16, 3)
    # Solid colours survive JPEG within a few levels; the label matches the colour the fixture gave the class.
    np.testing.assert_allclose(colour_at_centre(img), [50, 5, 160], atol=6)
    val = open_dataset(folder_root, kind="imagenet", split="val", image_size=16)
    assert len(val) == 6 and val.classes == NAMES
    assert list(val.labels) == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(colour_at_centre(val.load(4)), [90, 0, 120])


def test_folder_layout_without_classes_txt_uses_sorted_folders(tmp_path):
    write_folder_split(tmp_path, "train", 2, classes=["b_cls", "a_cls"])
    write_folder_split(tmp_path, "val", 1, classes=["b_cls"])  # val lacks a class: labels still follow train
    ds = open_dataset(tmp_path, kind="folder", image_size=8)
    assert ds.class_ids == ["a_cls", "b_cls"] and ds.classes == ["a_cls", "b_cls"]
    val = open_dataset(tmp_path, split="val", image_size=8)
    assert val.class_ids == ["a_cls", "b_cls"] and list(val.labels) == [1]


def test_class_folders_directly_under_root(tmp_path):
    write_folder_split(tmp_path, "data", 2)
    ds = open_dataset(tmp_path / "data", image_size=8)
    assert len(ds) == 6 and ds.class_ids == WNIDS


def test_resize_shorter_side_then_centre_crop(tmp_path):
    # 300 x 100: red 100-pixel bands left and right of a green 100 x 100 centre square.
    a = np.zeros((100, 300, 3), np.uint8)
    a[:, :100] = (255, 0, 0)
    a[:, 100:200] = (0, 255, 0)
    a[:, 200:] = (255, 0, 0)
    Image.fromarray(a).save(tmp_path / "wide.png")
    out = load_image_file(tmp_path / "wide.png", 50)
    assert out.shape == (50, 50, 3)
    np.testing.assert_array_equal(out[:, 1:-1], np.broadcast_to([0, 255, 0], (50, 48, 3)))
    # Portrait: the centre crop is vertical.
    Image.fromarray(a.transpose(1, 0, 2).copy()).save(tmp_path / "tall.png")
    out = load_image_file(tmp_path / "tall.png", 50)
    np.testing.assert_array_equal(out[1:-1, :], np.broadcast_to([0, 255, 0], (48, 50, 3)))


def test_small_images_are_upscaled(tmp_path):
    a = np.zeros((8, 8, 3), np.uint8)
    a[:, 4:] = 200  # left half black, right half grey
    Image.fromarray(a).save(tmp_path / "small.png")
    out = load_image_file(tmp_path / "small.png", 64)
    assert out.shape == (64, 64, 3)
    assert out[:, :28].max() == 0 and out[:, 36:].min() == 200


def test_large_jpeg_uses_draft_and_keeps_content(tmp_path):
    a = np.zeros((1200, 1600, 3), np.uint8)
    a[:, :, 0] = 180
    a[:, 800:, 2] = 90
    Image.fromarray(a).save(tmp_path / "big.jpg", quality=95)
    out = load_image_file(tmp_path / "big.jpg", 64)
    assert out.shape == (64, 64, 3)
    np.testing.assert_allclose(out[32, 5], [180, 0, 0], atol=6)
    np.testing.assert_allclose(out[32, 58], [180, 0, 90], atol=6)


@pytest.mark.parametrize("mode,colour,expected", [
    ("L", 120, (120, 120, 120)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),  # pure cyan-free magenta+yellow = red
    ("RGBA", (200, 100, 50, 255), (200, 100, 50)),
    ("RGBA", (200, 100, 50, 0), (0, 0, 0)),  # fully transparent: composited on black
    ("LA", (100, 128), (50, 50, 50)),  # half transparent grey over black
    ("I;16", 65535, (255, 255, 255)),  # 16-bit grayscale rescaled, not clipped
])
def test_modes_are_converted_to_rgb(tmp_path, mode, colour, expected):
    img = Image.new(mode, (20, 20), colour)
    path = tmp_path / ("img.jpg" if mode in ("L", "CMYK") else "img.png")
    img.save(path)
    out = load_image_file(path, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[5, 5], expected, atol=3)


def test_palette_images_with_and_without_transparency(tmp_path):
    p = Image.new("P", (12, 12), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    p.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(load_image_file(tmp_path / "pal.png", 6)[3, 3], [10, 200, 30])
    p.info["transparency"] = 1
    p.save(tmp_path / "pal.gif", transparency=1)
    np.testing.assert_array_equal(load_image_file(tmp_path / "pal.gif", 6)[3, 3], [0, 0, 0])


def test_unreadable_and_truncated_files_raise_bad_image(tmp_path):
    (tmp_path / "garbage.jpg").write_bytes(b"this is not an image at all")
    with pytest.raises(BadImage, match="garbage.jpg"):
        load_image_file(tmp_path / "garbage.jpg", 16)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImage, match="truncated.jpg"):
        load_image_file(tmp_path / "truncated.jpg", 16)
    with pytest.raises(BadImage, match="missing.jpg"):
        load_image_file(tmp_path / "missing.jpg", 16)


# ------------------------------------------------------------------------------------ flat ILSVRC val


def write_flat_val(root: Path, labels_1based: list[int]) -> list[str]:
    val = root / "val"
    val.mkdir(parents=True)
    names = [f"ILSVRC2012_val_{k + 1:08d}.JPEG" for k in range(len(labels_1based))]
    for name, lab in zip(names, labels_1based):
        solid((60 * lab, 0, 0), size=(20, 20)).save(val / name)
    return names


def test_flat_val_with_ground_truth_file(folder_root):
    import shutil

    shutil.rmtree(folder_root / "val")
    labels = [3, 1, 2, 2, 1]
    write_flat_val(folder_root, labels)
    (folder_root / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{v}\n" for v in labels))
    ds = open_dataset(folder_root, split="val", image_size=8)
    assert ds.class_ids == WNIDS and len(ds) == 5
    assert list(ds.labels) == [v - 1 for v in labels]
    np.testing.assert_allclose(colour_at_centre(ds.load(0)), [180, 0, 0], atol=4)


def test_flat_val_with_two_column_file(tmp_path):
    write_folder_split(tmp_path, "train", 1)
    names = write_flat_val(tmp_path, [1, 2, 3, 1])
    # wnid labels in one file, 0-based integers (Caffe's val.txt) in the other.
    (tmp_path / "val" / "val_labels.txt").write_text(
        "".join(f"{n}\t{WNIDS[lab]}\n" for n, lab in zip(names, [2, 0, 1, 2])))
    ds = open_dataset(tmp_path, kind="imagenet", split="val", image_size=8)
    assert list(ds.labels) == [2, 0, 1, 2]
    (tmp_path / "val" / "val_labels.txt").unlink()
    (tmp_path / "val.txt").write_text("".join(f"{n} {lab}\n" for n, lab in zip(names[::-1], [1, 1, 0, 2])))
    ds = open_dataset(tmp_path, split="val", image_size=8)
    assert list(ds.labels) == [2, 0, 1, 1]
    # Kaggle's LOC_val_solution.csv: ImageId (no extension), then the wnid and its boxes.
    (tmp_path / "val.txt").unlink()
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "".join(
        f"{n[:-5]},{WNIDS[lab]} 1 2 3 4 {WNIDS[lab]} 5 6 7 8\n" for n, lab in zip(names, [0, 2, 2, 1])))
    assert list(open_dataset(tmp_path, kind="folder", split="val", image_size=8).labels) == [0, 2, 2, 1]


def test_flat_val_label_count_mismatch_is_clear(tmp_path):
    write_folder_split(tmp_path, "train", 1)
    write_flat_val(tmp_path, [1, 2, 3])
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n2\n")
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        open_dataset(tmp_path, split="val")


# -------------------------------------------------------------------------------------------- CIFAR-10


def cifar_arrays(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def cifar_py(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for k in range(1, 6):
        data, labels = cifar_arrays(4, k)
        with open(d / f"data_batch_{k}", "wb") as f:
            pickle.dump({b"batch_label": b"training batch", b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * 4}, f, protocol=2)
    data, labels = cifar_arrays(6, 99)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"labels": labels, b"data": data}, f, protocol=2)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}, f, protocol=2)
    return tmp_path


def test_cifar10_python_pickles(cifar_py):
    train = open_dataset(cifar_py, image_size=256)  # image_size does not apply: CIFAR stays 32 x 32
    assert len(train) == 20 and train.image_size == 32 and train.classes == CIFAR_NAMES
    data, labels = cifar_arrays(4, 2)
    img = train.load(5)  # second image of data_batch_2
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    # Row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major.
    np.testing.assert_array_equal(img[:, :, 0], data[1, :1024].reshape(32, 32))
    np.testing.assert_array_equal(img[3, 7], data[1, [3 * 32 + 7, 1024 + 3 * 32 + 7, 2048 + 3 * 32 + 7]])
    assert train.label(5) == labels[1]
    test = open_dataset(cifar_py / "cifar-10-batches-py", kind="cifar10", split="val")
    assert len(test) == 6 and list(test.labels) == cifar_arrays(6, 99)[1]
    # Picklable for 'spawn' workers without copying the pixels.
    assert len(pickle.dumps(train)) < 5000 and np.array_equal(pickle.loads(pickle.dumps(train)).load(5), img)


def test_the_trainer_sees_cifar10_at_its_image_size(cifar_py):
    """The small net's recipe takes random 32x32 crops of 36x36 images: CIFAR-10 is resampled to --image-size."""
    from PIL import Image

    from alexnet_cuda.data.sources import open_datasets
    from alexnet_cuda.train.config import TrainConfig, resolve

    c = resolve(TrainConfig(data=str(cifar_py), out=str(cifar_py / "run")))
    assert (c.dataset, c.image_size, c.input_size) == ("cifar10", 36, 32)
    train, val = open_datasets(c)
    assert train.image_size == val.image_size == 36 and len(train) == 20 and list(val.labels) == \
        cifar_arrays(6, 99)[1]
    native = open_dataset(cifar_py).load(5)
    want = np.asarray(Image.fromarray(native).resize((36, 36), Image.BILINEAR))
    np.testing.assert_array_equal(train.load(5), want)
    assert np.array_equal(pickle.loads(pickle.dumps(train)).load(5), want)  # for 'spawn' workers


def test_cifar10_binary(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    for name, seed in [(f"data_batch_{k}.bin", k) for k in range(1, 6)] + [("test_batch.bin", 9)]:
        data, labels = cifar_arrays(3, seed)
        rec = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (d / name).write_bytes(rec.tobytes())
    (d / "batches.meta.txt").write_text("\n".join(CIFAR_NAMES) + "\n\n")
    ds = open_dataset(tmp_path, split="test")
    assert len(ds) == 3 and ds.classes == CIFAR_NAMES
    data, labels = cifar_arrays(3, 9)
    np.testing.assert_array_equal(ds.load(2).transpose(2, 0, 1).reshape(-1), data[2])
    assert list(ds.labels) == labels
    assert len(open_dataset(tmp_path, kind="cifar10")) == 15
    (d / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="3073-byte"):
        open_dataset(tmp_path, split="test")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_unpickler_refuses_code(tmp_path):
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        safe_unpickle(pickle.dumps({b"data": _Evil()}, protocol=2))
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        open_dataset(tmp_path)
    # Plain NumPy arrays in any protocol do load.
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for protocol in (2, 4, 5):
        np.testing.assert_array_equal(safe_unpickle(pickle.dumps({"a": arr}, protocol=protocol))["a"], arr)


# ---------------------------------------------------------------------------------------- Tiny ImageNet


def test_tiny_imagenet_layout(tmp_path):
    wnids = ["n02124075", "n01443537"]
    (tmp_path / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (tmp_path / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn02124075\tEgyptian cat\n"
                                        "n00000001\tunused\n")
    for c, w in enumerate(wnids):
        d = tmp_path / "train" / w / "images"
        d.mkdir(parents=True)
        for k in range(3):
            solid((100 * c, 50, 0), size=(64, 64)).save(d / f"{w}_{k}.JPEG")
        (tmp_path / "train" / w / f"{w}_boxes.txt").write_text("")
    (tmp_path / "val" / "images").mkdir(parents=True)
    ann = []
    for k, w in enumerate([wnids[0], wnids[1], wnids[0]]):
        (solid(80, size=(64, 64), mode="L") if k == 1 else solid((0, 0, 80 * k), size=(64, 64))).save(
            tmp_path / "val" / "images" / f"val_{k}.JPEG")
        ann.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63\n")
    (tmp_path / "val" / "val_annotations.txt").write_text("".join(ann))
    train = open_dataset(tmp_path, image_size=224)
    assert train.image_size == 64 and len(train) == 6
    assert train.class_ids == sorted(wnids) and train.classes == ["goldfish, Carassius auratus", "Egyptian cat"]
    assert list(train.labels) == [0, 0, 0, 1, 1, 1]
    val = open_dataset(tmp_path, kind="tinyimagenet", split="val")
    assert list(val.labels) == [1, 0, 1]
    assert val.load(1).shape == (64, 64, 3)  # grayscale JPEG converted


# ------------------------------------------------------------------------------------------- bad layout


def test_empty_or_wrong_directory_names_path_and_layout(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}.*empty or not a recognised(.|\n)*expected one of these"):
        open_dataset(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="class folders   : ROOT/train/<class>"):
        open_dataset(tmp_path)
    with pytest.raises(ValueError, match=f"no 'train' images found in {tmp_path}"):
        open_dataset(tmp_path, kind="folder")
    with pytest.raises(ValueError, match="does not hold CIFAR-10"):
        open_dataset(tmp_path, kind="cifar10")
    with pytest.raises(ValueError, match="not a Tiny ImageNet"):
        open_dataset(tmp_path, kind="tinyimagenet")
    with pytest.raises(ValueError, match="is not a directory"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        open_dataset(tmp_path, kind="mnist")


def test_flat_images_without_labels_file_is_clear(tmp_path):
    write_flat_val(tmp_path, [1, 2])
    with pytest.raises(ValueError, match="no class folders and no labels file"):
        open_dataset(tmp_path, kind="imagenet", split="val")


# ---------------------------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_sized():
    a, b = synthetic_dataset(seed=3), synthetic_dataset(seed=3)
    assert len(a) == 5000 and len(synthetic_dataset("val")) == 1000
    assert a.image_size == 32 and len(a.classes) == 10 and len(set(a.classes)) == 10
    for i in (0, 17, 4999):
        np.testing.assert_array_equal(a.load(i), b.load(i))
    assert not np.array_equal(a.load(0), synthetic_dataset(seed=4).load(0))
    assert not np.array_equal(a.load(0), synthetic_dataset("val", seed=3).load(0))
    big = synthetic_dataset(num_classes=12, num_images=30, image_size=64)
    assert big.load(29).shape == (64, 64, 3) and big.label(29) == 29 % 12 and len(big) == 30
    assert open_dataset("synthetic", image_size=40).load(0).shape == (40, 40, 3)


def test_synthetic_classes_differ():
    """Class means differ (tint), and within-class images vary (jitter); a nonlinear statistic separates
    stripe orientation, which no single pixel's mean reveals."""
    ds = synthetic_dataset(num_images=400, image_size=32)
    x = np.stack([ds.load(i) for i in range(len(ds))]).astype(np.float64)
    y = ds.labels
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    assert np.std(x[y == 0], axis=0).mean() > 10  # per-image variation
    dists = np.linalg.norm((means[:, None] - means[None]).reshape(10, 10, -1), axis=-1)
    assert (dists[~np.eye(10, dtype=bool)] > 1).all()
    # Orientation energy along rows vs columns (a quadratic feature) tracks the class's stripe angle.
    g = x.mean(-1)
    by_angle = {}
    for c, (o, _, _, _) in enumerate(ds.attributes):
        by_angle.setdefault(o, []).append(c)
    power = np.abs(np.fft.fft2(g - g.mean((1, 2), keepdims=True))) ** 2
    along_x = power[:, [0, 1, -1], 1:8].sum((1, 2))  # ky ~ 0: intensity changes along x, vertical stripes
    along_y = power[:, 1:8, [0, 1, -1]].sum((1, 2))  # kx ~ 0: horizontal stripes
    score = np.log(along_y / along_x)
    if 0 in by_angle and 2 in by_angle:  # 0 deg (vertical stripes) vs 90 deg (horizontal stripes)
        s0 = np.concatenate([score[y == c] for c in by_angle[0]]).mean()
        s90 = np.concatenate([score[y == c] for c in by_angle[2]]).mean()
        assert s90 > s0 + 0.5, (s0, s90)


# -------------------------------------------------------------------------------- real mini ImageNet


def _imagenette_mini() -> Path | None:
    for p in (Path(__file__).resolve().parents[2].parent / "shared/data/imagenette-mini",
              Path("/work/shared/data/imagenette-mini")):
        if (p / "train").is_dir():
            return p
    return None


@pytest.mark.skipif(_imagenette_mini() is None, reason="shared/data/imagenette-mini is not present")
def test_imagenette_mini_subset():
    root = _imagenette_mini()
    train = open_dataset(root, split="train")
    val = open_dataset(root, kind="imagenet", split="val")
    assert len(train.classes) == 10 and len(train) == 1000 and len(val) == 300
    assert train.classes[0] == "tench" and train.class_ids[0] == "n01440764"
    assert np.bincount(train.labels).tolist() == [100] * 10 and np.bincount(val.labels).tolist() == [30] * 10
    assert val.classes == train.classes
    img = train.load(0)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8 and img.std() > 10  # 224 source upscaled
    assert Image.open(os.path.join(root, "train", train.class_ids[0], os.listdir(
        os.path.join(root, "train", train.class_ids[0]))[0])).size == (224, 224)
    assert open_dataset(root, split="val", image_size=224).load(299).shape == (224, 224, 3)


def test_synthetic_is_not_mirrored_in_training():
    """Its classes tell 45 from 135 degrees and left from right, so a mirror image is another class's image."""
    from alexnet_cuda.data.base import Subset

    train = synthetic_dataset("train", num_images=4)
    assert train.mirror_invariant is False and Subset(train, [0, 1]).mirror_invariant is False
