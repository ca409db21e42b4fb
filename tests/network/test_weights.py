"""``python -m alexnet_cuda.weights``: export a checkpoint to safetensors and import it back bit for bit, import a
.pth state dict, and refuse bad weights with one line naming the file and the tensor."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from subprocesses import run_module
from test_pth import RunsACommand, Storage, tensor, write_pth

from alexnet_cuda import AlexNet
from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import evaluate as evaluate_mod
from alexnet_cuda import safetensors as st
from alexnet_cuda import weights as weights_mod

TINY = {"arch": "alexnet-small", "widths": {"conv": [4, 4, 4, 4, 4], "fc": [8, 8]}}
# 40 synthetic images (8 for validation), one epoch of the full alexnet-small: a few seconds.
TINY_REAL = ["--synthetic-images", "40", "--batch-size", "8", "--stats-images", "16", "--workers", "0",
             "--device", "cpu", "--no-progress", "--epochs", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint written by a real (tiny) training run."""
    out = tmp_path_factory.mktemp("run")
    r = run_module("alexnet_cuda.train", *TINY_REAL, "--out", str(out), cwd=out, timeout=300)
    assert r.returncode == 0, r.stderr
    return out / "best.npz"


def _checkpoint(tmp_path, rng, **options) -> ckpt_io.Checkpoint:
    """A checkpoint of a tiny net made in memory (random weights, a per-channel mean)."""
    config = dict(TINY, num_classes=3)
    config.update(options)
    params = {k: rng.standard_normal(v.shape).astype(np.float32)
              for k, v in AlexNet(devices="cpu", **config).state_dict().items()}
    for k in params:
        if k.endswith("running_var"):
            params[k] = np.abs(params[k]) + 0.5
    return ckpt_io.Checkpoint(params=params, arrays={"mean": np.array([120.5, 115.25, 100.0], np.float32)},
                              meta={"model": config, "classes": ["a", "b", "c"], "class_ids": ["A", "B", "C"],
                                    "image_size": 36, "normalization_scale": 0.0171, "epoch": 4})


def _assert_same(a: ckpt_io.Checkpoint, b: ckpt_io.Checkpoint) -> None:
    # The training-only arrays (the RGB PCA of the augmentation) are not weights: only the mean travels.
    for x, y in ((a.params, b.params), ({"mean": a.arrays["mean"]}, b.arrays)):
        assert set(x) == set(y)
        for k in x:
            assert x[k].dtype == y[k].dtype == np.float32 and x[k].shape == y[k].shape, k
            assert x[k].tobytes() == y[k].tobytes(), k  # every bit
    for k in weights_mod._META_KEYS:
        assert a.meta.get(k) == b.meta.get(k), k


def test_export_then_import_gives_identical_bits_and_the_same_evaluation(trained, tmp_path):
    r = run_module("alexnet_cuda.weights", "export", str(trained), "--safetensors", str(tmp_path / "w.safetensors"),
                   cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "alexnet-small" in r.stdout
    tensors, metadata = st.load(tmp_path / "w.safetensors")
    original = ckpt_io.load(trained)
    assert set(tensors) == set(original.params) | {"normalization.mean"}
    assert metadata["format"] == "alexnet_cuda.weights" and json.loads(metadata["model"]) == original.model_config
    r = run_module("alexnet_cuda.weights", "import", str(tmp_path / "w.safetensors"), "--out",
                   str(tmp_path / "model.npz"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    imported = ckpt_io.load(tmp_path / "model.npz")
    _assert_same(original, imported)
    # The same numbers from evaluate, on the validation images of the run.
    dataset = evaluate_mod.dataset_for(original, None, None, "val")
    results = []
    for path in (trained, tmp_path / "model.npz"):
        _, _, model = ckpt_io.load_for_inference(path, "cpu")
        results.append(evaluate_mod.evaluate(model, dataset, batch_size=4, workers=0))
    assert results[0] == results[1] and results[0]["images"] == 8


@pytest.mark.parametrize("options", [{}, {"norm": "batchnorm"},
                                     {"towers": 1, "widths": {"conv": [4, 4, 4, 4, 4]}, "head": "gap"}])
def test_round_trip_of_the_variants(tmp_path, rng, options):
    """BatchNorm's running statistics, one tower, the GAP head: every tensor comes back bit for bit."""
    ckpt = _checkpoint(tmp_path, rng, **options)
    ckpt_io.save(tmp_path / "a.npz", ckpt)
    assert weights_mod.main(["export", str(tmp_path / "a.npz"), "--safetensors", str(tmp_path / "a.safetensors")]) == 0
    assert weights_mod.main(["import", str(tmp_path / "a.safetensors"), "--out", str(tmp_path / "b.npz")]) == 0
    _assert_same(ckpt_io.load(tmp_path / "a.npz"), ckpt_io.load(tmp_path / "b.npz"))


def test_a_file_without_our_metadata_takes_the_network_from_like(tmp_path, rng):
    ckpt = _checkpoint(tmp_path, rng)
    ckpt_io.save(tmp_path / "like.npz", ckpt)
    st.save(tmp_path / "bare.safetensors", {k: v.astype(np.float64) for k, v in ckpt.params.items()})
    assert weights_mod.main(["import", str(tmp_path / "bare.safetensors"), "--out", str(tmp_path / "m.npz")]) == 2
    assert weights_mod.main(["import", str(tmp_path / "bare.safetensors"), "--out", str(tmp_path / "m.npz"),
                             "--like", str(tmp_path / "like.npz")]) == 0
    _assert_same(ckpt, ckpt_io.load(tmp_path / "m.npz"))  # float64 in, the same float32 out


def _exported(tmp_path, rng, change) -> str:
    """A file written by export, with ``change(tensors, metadata)`` applied."""
    ckpt = _checkpoint(tmp_path, rng)
    ckpt_io.save(tmp_path / "c.npz", ckpt)
    weights_mod.main(["export", str(tmp_path / "c.npz"), "--safetensors", str(tmp_path / "good.safetensors")])
    tensors, metadata = st.load(tmp_path / "good.safetensors")
    change(tensors, metadata)
    st.save(tmp_path / "bad.safetensors", tensors, metadata)
    return str(tmp_path / "bad.safetensors")


def _set(key, value, dtype=np.float64):
    def change(tensors, metadata):
        tensors[key] = tensors[key].astype(dtype)
        tensors[key].flat[1] = value
    return change


@pytest.mark.parametrize("change,message", [
    (_set("features.0.tower1.weight", np.nan), "features.0.tower1.weight contains nan at index (0, 0, 0, 1)"),
    (_set("classifier.6.tower0.bias", -np.inf, np.float32), "classifier.6.tower0.bias contains -inf at index (1,)"),
    (_set("classifier.1.tower0.weight", 1e39), "classifier.1.tower0.weight holds 1e+39 at index (0, 1), beyond "
                                                 "float32's range"),
    (_set("normalization.mean", np.nan), "the mean contains NaN or inf"),
    (lambda t, m: t.update({"features.3.tower0.weight": np.zeros((2, 2), np.float32)}),
     "features.3.tower0.weight has shape (2, 2), expected"),
    (lambda t, m: t.update({"extra.weight": np.zeros(2, np.float32)}), "unexpected ['extra.weight']"),
    (lambda t, m: t.pop("features.3.tower0.weight"), "missing ['features.3.tower0.weight']"),
    (lambda t, m: t.update({"features.0.tower0.weight": t["features.0.tower0.weight"].astype(np.int32)}),
     "features.0.tower0.weight must be a float array"),
    (lambda t, m: m.update({"model": "{not json"}), "metadata 'model' is not JSON"),
    (lambda t, m: m.update({"version": "99"}), "version '99' is newer than this alexnet_cuda understands"),
    (lambda t, m: m.update({"model": json.dumps({"arch": "vgg"})}), "arch must be 'alexnet' or"),
    # A small file describing a huge network: refused from the layer table, before anything is allocated.
    (lambda t, m: m.update({"model": json.dumps(dict(json.loads(m["model"]), num_classes=2**31 - 1))}),
     "it describes a network of 19,327,353,999 parameters but holds 1,203 values"),
])
def test_bad_weights_are_refused_in_one_line_naming_the_tensor(tmp_path, rng, capsys, change, message):
    bad = _exported(tmp_path, rng, change)
    assert weights_mod.main(["import", bad, "--out", str(tmp_path / "x.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m alexnet_cuda.weights: error: ") and err.count("\n") == 1, err
    assert bad in err and message in err, err
    assert not (tmp_path / "x.npz").exists()


def test_part_of_a_torchvision_alexnet_is_refused_saying_why(tmp_path, capsys):
    """torchvision's names import as torchvision-alexnet (tests/network/test_torchvision_weights.py); a file with
    only some of them says what is missing."""
    st.save(tmp_path / "tv.safetensors", {"features.0.weight": np.zeros((64, 3, 11, 11), np.float32),
                                          "features.0.bias": np.zeros(64, np.float32)})
    assert weights_mod.main(["import", str(tmp_path / "tv.safetensors"), "--out", str(tmp_path / "x.npz")]) != 0
    err = capsys.readouterr().err
    assert "holds torchvision's AlexNet names but no 2-d 'classifier.6.weight'" in err
    assert not (tmp_path / "x.npz").exists()


def _project_storages(params: dict[str, np.ndarray]):
    storages = [Storage(str(i), a.reshape(-1)) for i, a in enumerate(params.values())]
    return {k: tensor(s, 0, a.shape) for (k, a), s in zip(params.items(), storages)}, storages


def test_import_of_a_pth_state_dict_with_our_names(tmp_path, rng, capsys):
    """A .pth in torch.save's layout (built by hand: no PyTorch needed) with this project's names and --like."""
    ckpt = _checkpoint(tmp_path, rng, norm="batchnorm")
    ckpt_io.save(tmp_path / "like.npz", ckpt)
    sd, storages = _project_storages(ckpt.params)
    write_pth(tmp_path / "ours.pth", sd, storages)
    assert weights_mod.main(["import", str(tmp_path / "ours.pth"), "--out", str(tmp_path / "m.npz")]) == 2
    assert "does not say which network it holds" in capsys.readouterr().err
    assert weights_mod.main(["import", str(tmp_path / "ours.pth"), "--out", str(tmp_path / "m.npz"),
                             "--like", str(tmp_path / "like.npz")]) == 0
    _assert_same(ckpt, ckpt_io.load(tmp_path / "m.npz"))
    evil = write_pth(tmp_path / "evil.pth", {"w": RunsACommand(tmp_path / "pwned")})
    assert weights_mod.main(["import", str(evil), "--out", str(tmp_path / "e.npz"), "--like",
                             str(tmp_path / "like.npz")]) == 1
    assert "refused: its pickle asks for os.system" in capsys.readouterr().err.replace("posix.", "os.")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "e.npz").exists()


def test_import_of_files_pytorch_writes(tmp_path, rng, capsys):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    ckpt = _checkpoint(tmp_path, rng)
    ckpt_io.save(tmp_path / "like.npz", ckpt)
    torch.save({k: torch.from_numpy(v) for k, v in ckpt.params.items()}, tmp_path / "ours.pth")
    r = run_module("alexnet_cuda.weights", "import", str(tmp_path / "ours.pth"), "--out", str(tmp_path / "m.npz"),
                   "--like", str(tmp_path / "like.npz"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _assert_same(ckpt, ckpt_io.load(tmp_path / "m.npz"))
    # part of torchvision's AlexNet layout (its names): refused, saying what is missing (the whole of it imports:
    # tests/network/test_torchvision_weights.py).
    tv = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 11, 4, 2), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2))
    torch.save(torch.nn.ModuleDict({"features": tv}).state_dict(), tmp_path / "tv.pth")
    assert weights_mod.main(["import", str(tmp_path / "tv.pth"), "--out", str(tmp_path / "x.npz")]) == 1
    assert "holds torchvision's AlexNet names but no 2-d 'classifier.6.weight'" in capsys.readouterr().err


def test_malformed_and_missing_files_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    assert weights_mod.main(["import", str(bad), "--out", str(tmp_path / "x.npz")]) == 1
    assert weights_mod.main(["import", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.npz")]) == 2
    assert weights_mod.main(["export", str(tmp_path / "none.npz"), "--safetensors", str(bad)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("python -m alexnet_cuda.weights: error: ") for line in lines)
    assert f"safetensors {bad}: not a safetensors file, or truncated: the header length" in lines[0]
    assert "none.safetensors: no such file" in lines[1] and "none.npz: no such file" in lines[2]


@pytest.mark.parametrize("args,flags", [([], ["export", "import"]), (["export"], ["CHECKPOINT", "--safetensors"]),
                                        (["import"], ["FILE", "--out", "--like", ".pth", "torchvision"])])
def test_help(tmp_path, args, flags):
    r = run_module("alexnet_cuda.weights", *args, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for f in flags:
        assert f in r.stdout, f
