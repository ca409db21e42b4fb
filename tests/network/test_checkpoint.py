"""Checkpoint files (alexnet_cuda.checkpoint): contents round-trip, no pickle, atomic writes, clear errors."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from fakes import FakeAlexNet

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda.checkpoint import Checkpoint, CheckpointError


def _example(rng, value: float = 1.0) -> Checkpoint:
    arrays = {"mean": rng.random((3, 8, 8), dtype=np.float32), "pca_eigvals": np.array([3, 2, 1], np.float32)}
    # An RNG state with a 128-bit integer (PCG64) and an array inside: both must survive without pickle.
    rng_state = {"seed": 7, "rng": np.random.PCG64(7).state, "buffer": np.arange(5, dtype=np.int64)}
    meta = {"model": {"num_classes": 4, "arch": "alexnet-small", "input_size": 8, "towers": 2, "seed": 0},
            "classes": ["cat", "dog", "owl", "eel"], "class_ids": ["c", "d", "o", "e"], "epoch": 3, "lr": 0.001,
            "image_size": 8, "augmenter": ckpt_io.pack_state(rng_state, arrays, "augmenter_state_")}
    return Checkpoint(params={"fc.weight": np.full((4, 48), value, np.float32), "fc.bias": np.zeros(4, np.float32)},
                      momentum={"fc.weight": np.ones((4, 48), np.float32), "fc.bias": np.ones(4, np.float32)},
                      arrays=arrays, meta=meta)


def test_round_trip_without_pickle(tmp_path, rng):
    ck = _example(rng)
    path = ckpt_io.save(tmp_path / "last.npz", ck)
    back = ckpt_io.load(path)
    for group in ("params", "momentum", "arrays"):
        a, b = getattr(ck, group), getattr(back, group)
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
            assert a[k].dtype == b[k].dtype
    assert back.meta["classes"] == ["cat", "dog", "owl", "eel"]
    assert back.meta["format"] == ckpt_io.FORMAT and back.meta["version"] == ckpt_io.VERSION
    state = ckpt_io.unpack_state(back.meta["augmenter"], back.arrays)
    assert state["rng"] == np.random.PCG64(7).state  # the 128-bit integers are exact
    np.testing.assert_array_equal(state["buffer"], np.arange(5))
    # Every entry is a plain array: numpy refuses pickled objects with allow_pickle=False, and none are needed.
    with np.load(path, allow_pickle=False) as z:
        for k in z.files:
            assert z[k].dtype != object
    with zipfile.ZipFile(path) as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())


def test_object_arrays_are_refused(tmp_path):
    ck = Checkpoint(params={"w": np.array([{"a": 1}], dtype=object)}, meta={})
    with pytest.raises(TypeError, match="object array"):
        ckpt_io.save(tmp_path / "x.npz", ck)
    with pytest.raises(TypeError, match="without pickle"):
        ckpt_io.pack_state({"f": object()}, {}, "p")


def _no_temp_files(directory) -> bool:
    return not [p for p in os.listdir(directory) if p.endswith(".tmp")]


def test_crash_in_rename_keeps_previous_checkpoint(tmp_path, rng, monkeypatch):
    path = tmp_path / "last.npz"
    ckpt_io.save(path, _example(rng, 1.0))

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(ckpt_io.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        ckpt_io.save(path, _example(rng, 2.0))
    monkeypatch.undo()
    back = ckpt_io.load(path)
    assert np.all(back.params["fc.weight"] == 1.0)  # the previous checkpoint, intact
    assert _no_temp_files(tmp_path)


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, rng, monkeypatch):
    path = tmp_path / "last.npz"
    ckpt_io.save(path, _example(rng, 1.0))
    real_savez = np.savez

    def half_written(f, **entries):
        f.write(b"PK\x03\x04 half of a zip file")  # a torn write, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_io.np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save(path, _example(rng, 2.0))
    monkeypatch.setattr(ckpt_io.np, "savez", real_savez)
    assert np.all(ckpt_io.load(path).params["fc.weight"] == 1.0)
    assert _no_temp_files(tmp_path)
    ckpt_io.save(path, _example(rng, 2.0))  # and a later save replaces it
    assert np.all(ckpt_io.load(path).params["fc.weight"] == 2.0)


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "garbage", "other_npz", "npy",
                                  "pickled", "bad_meta", "wrong_format", "future_version"])
def test_bad_files_are_rejected_naming_the_file(tmp_path, rng, case):
    path = tmp_path / f"{case}.npz"
    good = tmp_path / "good.npz"
    ckpt_io.save(good, _example(rng))
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "garbage":
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif case == "other_npz":
        np.savez(path, weights=np.ones(3))
    elif case == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    elif case == "pickled":
        np.savez(path, meta=np.array([{"format": ckpt_io.FORMAT}], dtype=object))
    elif case == "bad_meta":
        np.savez(path, meta=np.frombuffer(b"{not json", dtype=np.uint8))
    elif case in ("wrong_format", "future_version"):
        meta = {"format": "something.else", "version": 1} if case == "wrong_format" else \
            {"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION + 1}
        np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(CheckpointError) as info:
        ckpt_io.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_build_model_restores_weights_and_normalization(tmp_path, rng):
    model = FakeAlexNet(num_classes=4, arch="alexnet-small", input_size=8, seed=3)
    model.params["fc.weight"][:] = rng.random((4, 48), dtype=np.float32)
    mean = rng.random((3, 12, 12), dtype=np.float32) * 255
    ck = Checkpoint(params=model.state_dict(), momentum=model.optimizer_state_dict(), arrays={"mean": mean},
                    meta={"model": {"num_classes": 4, "arch": "alexnet-small", "input_size": 8, "seed": 3},
                          "classes": list("abcd"), "class_ids": list("ABCD"), "image_size": 12})
    path = ckpt_io.save(tmp_path / "best.npz", ck)
    rebuilt, back = ckpt_io.load_model(path, model_class=FakeAlexNet)
    np.testing.assert_array_equal(rebuilt.params["fc.weight"], model.params["fc.weight"])
    np.testing.assert_array_equal(rebuilt.mean, mean)
    assert back.classes == list("abcd") and back.class_ids == list("ABCD")
    images = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    model.set_normalization(mean)
    np.testing.assert_allclose(rebuilt.predict(images), model.predict(images))


@pytest.mark.parametrize("group", ["params", "momentum"])
@pytest.mark.parametrize("value,match", [(np.nan, "contains nan at index \\(2, 5\\)"),
                                         (np.inf, "contains inf"),
                                         (1e39, "holds 1e\\+39 at index \\(2, 5\\), beyond float32's range")])
def test_non_finite_or_overflowing_weights_are_refused(tmp_path, rng, group, value, match):
    """Loading a checkpoint refuses weights that are NaN or inf, or float64 values float32 cannot hold, naming the file
    and the entry (issue 21)."""
    ck = _example(rng)
    getattr(ck, group)["fc.weight"] = getattr(ck, group)["fc.weight"].astype(np.float64)
    getattr(ck, group)["fc.weight"][2, 5] = value
    path = ckpt_io.save(tmp_path / "bad.npz", ck)
    prefix = "param/" if group == "params" else "momentum/"
    with pytest.raises(CheckpointError, match=f"checkpoint {path}: {prefix}fc.weight {match}"):
        ckpt_io.load(path)


def test_build_model_refuses_non_finite_weights(rng):
    """build_model (a checkpoint made in memory, not read from a file) goes through load_state_dict's checks."""
    from alexnet_cuda import AlexNet

    config = {"num_classes": 4, "arch": "alexnet-small", "widths": {"conv": [4, 4, 4, 4, 4], "fc": [8, 8]}}
    params = AlexNet(devices="cpu", **config).state_dict()
    params["classifier.6.tower1.bias"] = params["classifier.6.tower1.bias"].astype(np.float64)
    params["classifier.6.tower1.bias"][1] = -1e40
    with pytest.raises(CheckpointError, match="does not match the network it describes .*classifier.6.tower1.bias "
                                              "holds -1e\\+40 at index \\(1,\\)"):
        ckpt_io.build_model(Checkpoint(params=params, meta={"model": config}), devices="cpu")


def test_find_latest(tmp_path):
    assert ckpt_io.find_latest(tmp_path / "runs") is None
    for i, name in enumerate(["a", "b"]):
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        ckpt_io.save(d / "best.npz", Checkpoint(meta={"i": i}))
        os.utime(d / "best.npz", (1000 + i, 1000 + i))
    assert ckpt_io.find_latest(tmp_path / "runs") == tmp_path / "runs" / "b" / "best.npz"


def test_checkpoints_get_the_permissions_open_would_give(tmp_path, rng):
    """Written through a temporary file (mkstemp makes those owner-only), a checkpoint still gets 0666 less the
    umask, like any file the user creates."""
    mask = os.umask(0o022)
    os.umask(mask)
    path = ckpt_io.save(tmp_path / "last.npz", _example(rng, 1.0))
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)
