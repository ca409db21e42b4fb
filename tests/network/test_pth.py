"""PyTorch .pth state dicts read without PyTorch (alexnet_cuda.pth): files in torch.save's layout are read exactly, and
pickles that ask for anything but tensors (os.system, eval, a __setstate__) are refused naming it, without running it.

The files are built by hand here in torch.save's layout (so the tests run without PyTorch), and also written by
PyTorch itself where it is installed."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from alexnet_cuda import pth
from alexnet_cuda.pth import PthError


class Global:
    """Pickled as the global ``module.name`` (which need not exist here: torch may not be installed)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that what it reduces with is callable
        raise AssertionError("never called")


class Call:
    """Pickled as ``func(*args)`` (then BUILD with ``state`` when given)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class Storage:
    def __init__(self, key: str, values: np.ndarray, kind: str = "FloatStorage", numel: int | None = None,
                 view: tuple | None = None):
        self.key, self.values, self.kind, self.view = key, values, kind, view
        self.numel = values.size if numel is None else numel


class TorchLikePickler(pickle._Pickler):
    """Protocol 2 with GLOBAL opcodes and ('storage', type, key, location, numel) persistent ids, as torch.save."""

    def __init__(self, f, pid=None, legacy=False):
        super().__init__(f, protocol=2)
        self.pid, self.legacy = pid, legacy

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            pid = self.pid or ("storage", Global("torch", obj.kind), obj.key, "cpu", obj.numel)
            return pid + (obj.view,) if self.legacy else pid
        return None


def tensor(storage: Storage, offset=0, size=None, stride=None, *extra):
    size = tuple(storage.values.shape) if size is None else size
    if stride is None:
        stride = tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))
    return Call(Global("torch._utils", "_rebuild_tensor_v2"),
                (storage, offset, size, stride, False, collections.OrderedDict(), *extra))


def write_pth(path, obj, storages=(), byteorder=b"little", pid=None, compress=zipfile.ZIP_STORED, prefix="archive"):
    buf = io.BytesIO()
    TorchLikePickler(buf, pid).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{prefix}/data.pkl", buf.getvalue())
        z.writestr(f"{prefix}/byteorder", byteorder)
        for s in storages:
            order = ">" if byteorder == b"big" else "<"
            z.writestr(zipfile.ZipInfo(f"{prefix}/data/{s.key}"), s.values.astype(s.values.dtype.newbyteorder(order))
                       .tobytes(), compress_type=compress)
        z.writestr(f"{prefix}/version", b"3\n")
    return path


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py


def write_legacy(path, obj, storages=(), system=None, keys=None, count_of=lambda s: s.numel):
    """PyTorch's pre-1.6 format: magic, protocol version, system info, the object, the storage keys, the storages."""
    buf = io.BytesIO()
    system = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}} \
        if system is None else system
    for header in (LEGACY_MAGIC, 1001, system):
        TorchLikePickler(buf).dump(header)
    TorchLikePickler(buf, legacy=True).dump(obj)
    storages = sorted(storages, key=lambda s: s.key)
    pickle.dump([s.key for s in storages] if keys is None else keys, buf, protocol=2)
    for s in storages:
        buf.write(struct.pack("<q", count_of(s)) + s.values.astype(s.values.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(buf.getvalue())
    return path


def state_dict(rng):
    """A state dict in torch.save's layout, and the arrays it must give."""
    w = Storage("0", rng.standard_normal(12).astype(np.float32))
    b = Storage("1", rng.standard_normal(4), "DoubleStorage")
    n = Storage("2", np.array([7], np.int64), "LongStorage")
    grid = Storage("3", rng.standard_normal(16).astype(np.float16), "HalfStorage")
    sd = collections.OrderedDict([
        ("conv.weight", tensor(w, 0, (3, 2, 2), (4, 2, 1))),
        ("conv.bias", tensor(b)),
        ("bn.num_batches_tracked", tensor(n, 0, (), ())),
        ("column", tensor(grid, 1, (4,), (4,))),  # a view: column 1 of a 4x4 tensor
        ("same_storage_again", tensor(w, 4, (2, 4), (4, 1))),
        ("empty", tensor(Storage("4", np.zeros(0, np.float32)), 0, (0, 3), (3, 1))),
    ])
    expected = {"conv.weight": w.values.reshape(3, 2, 2), "conv.bias": b.values, "bn.num_batches_tracked":
                np.array(7, np.int64), "column": grid.values.reshape(4, 4)[:, 1], "same_storage_again":
                w.values[4:].reshape(2, 4), "empty": np.zeros((0, 3), np.float32)}
    return sd, [w, b, n, grid, Storage("4", np.zeros(0, np.float32))], expected


@pytest.mark.parametrize("byteorder", [b"little", b"big"])
def test_a_state_dict_in_torch_saves_layout(tmp_path, rng, byteorder):
    sd, storages, expected = state_dict(rng)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])  # as nn.Module.state_dict() sets (a BUILD)
    got = pth.load(write_pth(tmp_path / "sd.pth", sd, storages, byteorder, prefix="sd"))
    assert list(got) == list(expected)
    for k, a in expected.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape and got[k].dtype.isnative, k
        assert np.array_equal(got[k], a), k
        assert got[k].flags.c_contiguous and got[k].flags.writeable


def test_a_state_dict_in_the_pre_1_6_format(tmp_path, rng):
    sd, storages, expected = state_dict(rng)
    whole = Storage("5", rng.standard_normal(10).astype(np.float32))
    part = Storage("5", whole.values, view=("5v", 4, 6))  # PyTorch < 0.4: a storage that is a slice of another
    sd["from_a_view"] = tensor(part, 1, (2, 2), (2, 1))
    expected["from_a_view"] = whole.values[5:9].reshape(2, 2)
    got = pth.load(write_legacy(tmp_path / "old.pth", sd, storages + [whole]))
    assert list(got) == list(expected)
    for k, a in expected.items():
        assert got[k].dtype == a.dtype and np.array_equal(got[k], a), k


@pytest.mark.parametrize("case,message", [
    ("evil_system_info", "refused: its pickle asks for os.system"),
    ("evil_object", "refused: its pickle asks for os.system"),
    ("big_endian", "written on a big-endian machine"),
    ("keys_do_not_match", "its list of storages does not match the storages its pickle uses"),
    ("wrong_count", "storage '0': its data does not start with its size 6"),
    ("huge_count", "storage '0': its data does not start with its size"),
    ("view_outside", "storage '0': a view ('0v', 4, 5) outside it"),
])
def test_bad_pre_1_6_files(tmp_path, rng, case, message):
    w = Storage("0", rng.standard_normal(6).astype(np.float32))
    obj, storages, options = {"w": tensor(w)}, [w], {}
    evil = Call(Global("os", "system"), (f"touch {tmp_path / 'pwned'}",))
    if case == "evil_system_info":
        options["system"] = {"little_endian": evil}
    elif case == "evil_object":
        obj = {"w": evil}
    elif case == "big_endian":
        options["system"] = {"little_endian": False}
    elif case == "keys_do_not_match":
        options["keys"] = ["0", "1"]
    elif case == "wrong_count":
        options["count_of"] = lambda s: 5
    elif case == "huge_count":
        options["count_of"] = lambda s: 2**62
    elif case == "view_outside":
        obj = {"w": tensor(Storage("0", w.values, view=("0v", 4, 5)), 0, (1,), (1,))}
    path = write_legacy(tmp_path / f"{case}.pth", obj, storages, **options)
    with pytest.raises(PthError) as info:
        pth.load(path)
    assert str(info.value).startswith(f"pth {path}: ") and message in str(info.value), str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_every_truncation_of_a_pre_1_6_file_is_refused(tmp_path, rng):
    sd, storages, _ = state_dict(rng)
    good = write_legacy(tmp_path / "good.pth", sd, storages).read_bytes()
    cut = tmp_path / "cut.pth"
    for n in range(len(good)):
        cut.write_bytes(good[:n])
        with pytest.raises(PthError, match=f"pth {cut}: "):
            pth.load(cut)


def test_bfloat16_is_widened_exactly(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    s = Storage("0", (values.view(np.uint32) >> 16).astype(np.uint16), "BFloat16Storage")
    got = pth.load(write_pth(tmp_path / "bf.pth", {"x": tensor(s)}, [s]))
    assert got["x"].dtype == np.float32 and np.array_equal(got["x"], values)


class RunsACommand:
    """The classic malicious pickle: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("make,refused", [
    (lambda m: RunsACommand(m), f"{os.system.__module__}.system"),  # posix.system on Linux and macOS
    (lambda m: {"w": RunsACommand(m)}, f"{os.system.__module__}.system"),
    (lambda m: Call(Global("os", "system"), (f"touch {m}",)), "os.system"),
    (lambda m: Call(Global("builtins", "eval"), (f"open('{m}', 'w')",)), "builtins.eval"),
    (lambda m: Call(Global("builtins", "getattr"), (Global("os", "path"), "join")), "builtins.getattr"),
    (lambda m: Call(Global("torch", "load"), (str(m),)), "torch.load"),
    (lambda m: Call(Global("subprocess", "Popen"), (["touch", str(m)],)), "subprocess.Popen"),
    (lambda m: Call(Global("numpy", "load"), (str(m),)), "numpy.load"),
])
def test_malicious_globals_are_refused_and_never_run(tmp_path, make, refused):
    marker = tmp_path / "pwned"
    path = write_pth(tmp_path / "evil.pth", make(marker))
    with pytest.raises(PthError, match=f"pth {path}: refused: its pickle asks for {refused}, which is not on the "
                                       f"allow-list"):
        pth.load(path)
    assert not marker.exists()


def _bad_files(rng):
    w = Storage("0", rng.standard_normal(6).astype(np.float32))
    return {
        # name: (object, storages, extra keyword arguments of write_pth, what the message says)
        "build_on_a_tensor": ({"w": Call(Global("torch._utils", "_rebuild_tensor_v2"),
                                         (w, 0, (6,), (1,), False, collections.OrderedDict()), state={"x": 1})},
                              [w], {}, "refused: its pickle sets the state of a ndarray"),
        "not_a_storage": ({"w": Call(Global("torch._utils", "_rebuild_tensor_v2"),
                                     ([1.0, 2.0], 0, (2,), (1,), False, collections.OrderedDict()))}, [], {},
                          "refused: a tensor rebuilt from a list, not a storage"),
        "past_the_storage": ({"w": tensor(w, 2, (3, 2), (2, 1))}, [w], {}, "reaches past its storage '0'"),
        "huge_stride": ({"w": tensor(w, 0, (2,), (10**12,))}, [w], {}, "reaches past its storage"),
        "broadcast": ({"w": tensor(w, 0, (10**9,), (0,))}, [w], {}, "or repeats its elements"),
        "negative_offset": ({"w": tensor(w, -1, (2,), (1,))}, [w], {}, "a tensor with unusual arguments"),
        "metadata": ({"w": tensor(w, 0, (6,), (1,), {"conj": True})}, [w], {}, "a tensor with unusual arguments"),
        "bad_pid": ({"w": tensor(w)}, [w], {"pid": ("module", "os", "system")},
                    "refused: a persistent id that is not a tensor storage"),
        "path_in_key": ({"w": tensor(Storage("../../etc/passwd", w.values))}, [], {},
                        "a storage key '../../etc/passwd' that is not a plain name"),
        "missing_record": ({"w": tensor(w)}, [], {}, "storage '0': no record archive/data/0 in the archive"),
        "size_mismatch": ({"w": tensor(Storage("0", w.values, numel=1000))}, [w], {},
                          "storage '0': 1000 elements of torch.FloatStorage take 4000 bytes, but its record holds 24"),
        "compressed": ({"w": tensor(w)}, [w], {"compress": zipfile.ZIP_DEFLATED}, "storage '0' is compressed"),
        "byteorder": ({"w": tensor(w)}, [w], {"byteorder": b"middle"}, "unknown byte order"),
        "a_list": ([tensor(w)], [w], {}, "holds a list, not a state dict"),
        "not_a_tensor": ({"w": tensor(w), "lr": 0.1}, [w], {}, "entry 'lr' is a float, not a tensor"),
    }


@pytest.mark.parametrize("case", sorted(_bad_files(np.random.default_rng(0))))
def test_bad_state_dicts_are_refused_naming_the_file(tmp_path, rng, case):
    obj, storages, options, message = _bad_files(rng)[case]
    path = write_pth(tmp_path / f"{case}.pth", obj, storages, **options)
    with pytest.raises(PthError) as info:
        pth.load(path)
    assert str(info.value).startswith(f"pth {path}: ") and message in str(info.value), str(info.value)


def test_files_that_are_not_torch_saves(tmp_path, rng):
    legacy = tmp_path / "legacy.pth"  # the pre-1.6 format opens with a pickled magic number
    legacy.write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.rest")
    with pytest.raises(PthError, match="cannot be read, it is truncated or corrupt"):
        pth.load(legacy)
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(PthError, match="not a file written by torch.save \\(neither a zip archive nor"):
        pth.load(tmp_path / "text.pth")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(PthError, match="expected one <name>/data.pkl, found 0"):
        pth.load(tmp_path / "other.zip")
    sd, storages, _ = state_dict(rng)
    good = write_pth(tmp_path / "good.pth", sd, storages).read_bytes()
    cut = tmp_path / "cut.pth"
    for n in range(0, len(good), max(1, len(good) // 64)):
        cut.write_bytes(good[:n])
        with pytest.raises(PthError, match=f"pth {cut}: "):
            pth.load(cut)
    # A pickle cut short inside an archive that is otherwise whole.
    buf = io.BytesIO()
    TorchLikePickler(buf).dump(sd)
    with zipfile.ZipFile(tmp_path / "short.pth", "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue()[:40])
    with pytest.raises(PthError, match="cannot be read, it is truncated or corrupt"):
        pth.load(tmp_path / "short.pth")


# ---- files that PyTorch itself writes ------------------------------------------------------------------------------

@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_files_read_exactly(tmp_path, zip_format):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 2))
    sd = net.state_dict()
    grid = torch.randn(5, 6, dtype=torch.float64)
    sd.update({"half": torch.randn(3).half(), "bf16": torch.randn(7).bfloat16(), "view": grid[1:, 2],
               "transposed": grid.t(), "ints": torch.arange(5, dtype=torch.int32), "flags": torch.tensor([True, False]),
               "scalar": torch.tensor(3.5), "param": torch.nn.Parameter(torch.randn(2, 2))})
    torch.save(sd, tmp_path / "net.pth", _use_new_zipfile_serialization=zip_format)
    got = pth.load(tmp_path / "net.pth")
    assert list(got) == list(sd)
    for k, t in sd.items():
        want = (t.float() if t.dtype == torch.bfloat16 else t).detach().numpy()
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        assert got[k].tobytes() == np.ascontiguousarray(want).tobytes(), k


def test_torch_save_of_something_else_is_refused(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    torch.save({"w": torch.zeros(2), "run": RunsACommand(tmp_path / "pwned")}, tmp_path / "evil.pth")
    with pytest.raises(PthError, match=f"refused: its pickle asks for {os.system.__module__}.system"):
        pth.load(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a whole module, not its state dict
    with pytest.raises(PthError, match="refused: its pickle asks for torch.nn.modules.linear.Linear"):
        pth.load(tmp_path / "module.pth")


@pytest.mark.parametrize("legacy", [False, True])
def test_random_corruptions_give_a_clear_error_or_the_state_dict(tmp_path, rng, legacy):
    """Bytes of a good file (either format) flipped at random: the reader returns a state dict or raises PthError,
    never another exception (and never runs anything)."""
    sd, storages, _ = state_dict(rng)
    good = (write_legacy(tmp_path / "good.pth", sd, storages) if legacy else
            write_pth(tmp_path / "good.pth", sd, storages)).read_bytes()
    bad = tmp_path / "bad.pth"
    for _ in range(300):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(data))
        try:
            got = pth.load(bad)
        except PthError:
            continue
        assert all(isinstance(a, np.ndarray) for a in got.values())
