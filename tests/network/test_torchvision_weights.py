"""torchvision's AlexNet weights in and out (``python -m alexnet_cuda.weights``): a torchvision-format state dict
(random weights, nothing downloaded) imports from .pth and .safetensors as a torchvision-alexnet checkpoint with
torchvision's preprocessing; exporting it writes torchvision's names and importing that gives identical bits; bad
files are refused naming the tensor; where PyTorch is installed, its own files import exactly and (once the engine
builds descriptions) our forward equals PyTorch's."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from subprocesses import run_module
from test_pth import Storage, tensor, write_pth
from torchvision_alexnet import TORCHVISION_KEYS, random_state_dict, torch_alexnet

from alexnet_cuda import AlexNet
from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import safetensors as st
from alexnet_cuda import weights as weights_mod
from alexnet_cuda.nets import torchvision as tv
from alexnet_cuda.nets.file_format import format_net

CLASSES = 5
ENGINE = hasattr(AlexNet, "from_description")


@pytest.fixture(scope="module")
def state():
    return random_state_dict(CLASSES, seed=3)


@pytest.fixture(scope="module")
def pth(state, tmp_path_factory):
    """The state dict as torch.save writes it (written once: 57 million weights)."""
    return write_state_pth(tmp_path_factory.mktemp("pth") / "alexnet.pth", state)


@pytest.fixture(scope="module")
def imported(pth):
    return weights_mod.import_weights(pth)


def write_state_pth(path, state):
    """``torch.save(state_dict)``'s zip layout, written without PyTorch (tests/network/test_pth.py)."""
    storages = [Storage(str(i), a.reshape(-1)) for i, a in enumerate(state.values())]
    sd = collections.OrderedDict((k, tensor(s, 0, a.shape)) for (k, a), s in zip(state.items(), storages))
    return write_pth(path, sd, storages)


def _check_imported(ckpt, state):
    config = dict(ckpt.model_config)
    assert format_net(tv.torchvision_alexnet(CLASSES)) == config.pop("description")  # model_from_config builds it
    assert config == {"arch": "torchvision-alexnet", "num_classes": CLASSES, "input_size": 224, "towers": 1}
    assert sorted(ckpt.params) == sorted(tv.our_name(k) for k in TORCHVISION_KEYS)
    for key, a in state.items():
        got = ckpt.params[tv.our_name(key)]
        assert got.dtype == np.float32 and got.tobytes() == a.tobytes(), key
    mean, scale = tv.normalization()
    np.testing.assert_array_equal(ckpt.arrays["mean"], mean)
    assert ckpt.meta["normalization_scale"] == [float(x) for x in scale]
    assert ckpt.meta["image_size"] == 256 and ckpt.meta["preprocessing"] == "torchvision"
    assert ckpt.classes == [str(i) for i in range(CLASSES)]


def test_pth_and_safetensors_import(tmp_path, state, pth):
    r = run_module("alexnet_cuda.weights", "import", str(pth), "--out", str(tmp_path / "a.npz"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "torchvision-alexnet (5 classes)" in r.stdout
    _check_imported(ckpt_io.load(tmp_path / "a.npz"), state)
    st.save(tmp_path / "alexnet.safetensors", state)
    _check_imported(weights_mod.import_weights(tmp_path / "alexnet.safetensors"), state)


def test_export_writes_torchvisions_names_and_imports_back_bit_for_bit(tmp_path, state, imported):
    ckpt = imported
    ckpt_io.save(tmp_path / "a.npz", ckpt)
    r = run_module("alexnet_cuda.weights", "export", str(tmp_path / "a.npz"), "--safetensors",
                   str(tmp_path / "out.safetensors"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tensors, metadata = st.load(tmp_path / "out.safetensors")
    assert sorted(tensors) == sorted([*TORCHVISION_KEYS, weights_mod.MEAN])
    for key, a in state.items():
        assert tensors[key].tobytes() == a.tobytes(), key
    again = weights_mod.import_weights(tmp_path / "out.safetensors")
    _check_imported(again, state)
    assert {k: again.meta[k] for k in ckpt.meta if k != "imported_from"} == \
        {k: ckpt.meta[k] for k in ckpt.meta if k != "imported_from"}


def test_class_names_come_along_through_like(tmp_path, state, pth):
    ckpt = weights_mod.import_weights(pth)
    ckpt.meta["classes"] = ckpt.meta["class_ids"] = ["cat", "dog", "eel", "fox", "gnu"]
    ckpt_io.save(tmp_path / "named.npz", ckpt)
    st.save(tmp_path / "plain.safetensors", state)  # torchvision's names, no metadata
    got = weights_mod.import_weights(tmp_path / "plain.safetensors", like=str(tmp_path / "named.npz"))
    assert got.classes == ["cat", "dog", "eel", "fox", "gnu"]
    other = dict(state, **{"classifier.6.weight": state["classifier.6.weight"][:2],
                           "classifier.6.bias": state["classifier.6.bias"][:2]})
    st.save(tmp_path / "two.safetensors", other)
    with pytest.raises(ValueError, match=r"weights of 2 classes, but --like .* describes torchvision-alexnet of 5"):
        weights_mod.import_weights(tmp_path / "two.safetensors", like=str(tmp_path / "named.npz"))


def _bad(state, case):
    s = dict(state)
    if case == "missing":
        del s["features.8.bias"]
    elif case == "extra":
        s["features.1.weight"] = np.ones(3, np.float32)  # a BatchNorm variant
    elif case == "shape":
        s["features.3.weight"] = s["features.3.weight"][:, :32].copy()
    elif case == "nan":
        s["classifier.4.bias"] = s["classifier.4.bias"].copy()
        s["classifier.4.bias"][7] = np.nan
    elif case == "overflow":
        s["features.0.bias"] = s["features.0.bias"].astype(np.float64)
        s["features.0.bias"][1] = 1e39
    elif case == "no-last":
        del s["classifier.6.weight"]
    return s


@pytest.mark.parametrize("case, message", [
    ("missing", r"is not torchvision's AlexNet: missing \['features.8.bias'\]"),
    ("extra", r"unexpected \['features.1.weight'\] \(a BatchNorm or other variant\?\)"),
    ("shape", r"features.3.weight is float32 \(192, 32, 5, 5\), expected float \(192, 64, 5, 5\)"),
    ("nan", r"classifier.4.bias contains nan at index \(7,\)"),
    ("overflow", r"features.0.bias holds 1e\+39 at index \(1,\), beyond float32's range"),
    ("no-last", r"no 2-d 'classifier.6.weight'"),
])
def test_bad_torchvision_state_dicts_are_refused_naming_the_tensor(tmp_path, state, case, message):
    """The checks on the tensors read (a file's reading is tested in test_pth.py and test_safetensors.py; one bad
    file goes through the command below)."""
    with pytest.raises(ValueError, match=message):
        weights_mod._import_torchvision(tmp_path / "bad.safetensors", _bad(state, case), {}, None)


def test_the_command_says_what_is_wrong_in_one_line(tmp_path, state):
    st.save(tmp_path / "bad.safetensors", _bad(state, "nan"))
    r = run_module("alexnet_cuda.weights", "import", "bad.safetensors", "--out", "x.npz", cwd=tmp_path)
    assert r.returncode != 0 and not (tmp_path / "x.npz").exists()
    assert "classifier.4.bias contains nan" in r.stderr and "Traceback" not in r.stderr


def test_pytorchs_own_files_import_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch_alexnet(CLASSES)
    want = {k: v.numpy().copy() for k, v in module.state_dict().items()}
    torch.save(module.state_dict(), tmp_path / "new.pth")
    torch.save(module.state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    for name in ("new.pth", "old.pth"):
        ckpt = weights_mod.import_weights(tmp_path / name)
        _check_imported(ckpt, want)
        # and torchvision's module takes our export back (strict: without our mean)
        ckpt_io.save(tmp_path / "a.npz", ckpt)
        weights_mod.export_safetensors(ckpt_io.load(tmp_path / "a.npz"), tmp_path / "out.safetensors")
        tensors, _ = st.load(tmp_path / "out.safetensors")
        tensors.pop(weights_mod.MEAN)
        again = torch_alexnet(CLASSES)
        again.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})


@pytest.mark.skipif(not ENGINE, reason="needs AlexNet.from_description (the engine that builds any description)")
def test_our_forward_equals_pytorchs(tmp_path, state, imported):
    """The imported network (our engine, float32) against torchvision's module in PyTorch (float64) on the same
    weights and the same torchvision-preprocessed images: within 1e-5 of the largest logit."""
    torch = pytest.importorskip("torch")
    ckpt = imported
    model = ckpt_io.build_model(ckpt, devices="cpu")
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    crops = np.full((3, 2), 16, np.int32)  # the centre 224x224 crop of 256x256
    model.compute_gradients(images, np.zeros(3, np.int64), training=False, crops=crops)
    ours = model.logits()
    mean, scale = tv.normalization()
    x = (images[:, 16:240, 16:240].transpose(0, 3, 1, 2) / 255.0 - np.array(tv.IMAGENET_MEAN)[:, None, None]) \
        / np.array(tv.IMAGENET_STD)[:, None, None]
    module = torch_alexnet(CLASSES).double().eval()
    module.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in state.items()})
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, want, rtol=0, atol=1e-5 * np.abs(want).max())


class _StandIn:
    """Records what checkpoint.build_model asks of the network (the engine is not needed to see it)."""

    built = None

    @classmethod
    def from_description(cls, desc, devices=None, **_):
        model = cls()
        model.desc, model.devices, model.calls = desc, devices, []
        _StandIn.built = model
        return model

    def load_state_dict(self, state):
        self.calls.append(("load_state_dict", sorted(state)))

    def set_normalization(self, mean, scale):
        self.calls.append(("set_normalization", np.asarray(mean), scale))


def test_build_model_builds_the_description_with_torchvisions_preprocessing(tmp_path, state, imported):
    ckpt = imported
    model = ckpt_io.build_model(ckpt, devices="cpu", model_class=_StandIn)
    assert model.desc.name == "torchvision-alexnet" and model.desc.classes == CLASSES
    assert model.calls[0] == ("load_state_dict", sorted(tv.our_name(k) for k in TORCHVISION_KEYS))
    _, mean, scale = model.calls[1]
    want_mean, want_scale = tv.normalization()
    np.testing.assert_array_equal(mean, want_mean)
    assert scale == [float(x) for x in want_scale]


@pytest.mark.skipif(not ENGINE, reason="needs AlexNet.from_description (the engine that builds any description)")
def test_predict_applies_torchvisions_preprocessing(tmp_path, state, imported):
    """predict on an image file equals PyTorch's softmax of torchvision's preprocessing of the same pixels
    (shorter side 256, centre 224 crop, ImageNet mean and std)."""
    torch = pytest.importorskip("torch")
    from PIL import Image

    from alexnet_cuda.data import load_image_file

    ckpt_io.save(tmp_path / "a.npz", imported)
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    r = run_module("alexnet_cuda.predict", "x.png", "--checkpoint", "a.npz", "--top", "1", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pixels = load_image_file(tmp_path / "x.png", 256)[16:240, 16:240]
    x = (pixels.transpose(2, 0, 1)[None] / 255.0 - np.array(tv.IMAGENET_MEAN)[:, None, None]) \
        / np.array(tv.IMAGENET_STD)[:, None, None]
    module = torch_alexnet(CLASSES).double().eval()
    module.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in state.items()})
    with torch.no_grad():
        probs = torch.softmax(module(torch.from_numpy(x)), 1).numpy()[0]
    first = json.loads(r.stdout)["predictions"]["x.png"][0]
    assert first["index"] == int(np.argmax(probs))
    assert first["probability"] == pytest.approx(float(probs.max()), abs=1e-4)
