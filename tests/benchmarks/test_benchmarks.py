"""Smoke test of the kernel microbenchmark (benchmarks/kernels.py): its main() runs every case on the CPU at tiny
shapes with the network's structure, one repetition, and writes its two results files with the expected keys.
Ops that are not implemented yet must be reported per op, never crash the run. Takes a few seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    # Appended: the installed alexnet_cuda (with its compiled _C) must win over the checkout's sources.
    sys.path.append(str(REPO_ROOT))

from benchmarks import kernels  # noqa: E402

TOP_KEYS = {"benchmark", "device", "build_info", "git_commit", "date_utc", "command", "batch", "repetitions",
            "warmup", "timing", "torch", "peaks", "targets", "results"}
RESULT_KEYS = {"name", "op", "layer", "pass", "shape", "status", "error", "times_s", "median_s", "rate", "rate_unit",
               "flops", "bytes", "torch", "ratio_ours_over_theirs", "judgement"}


def test_kernels_main_writes_results(tmp_path):
    payload = kernels.main(["--device", "cpu", "--tiny", "--batch", "2", "--reps", "1", "--warmup", "0",
                            "--no-torch", "--out", str(tmp_path)])
    jsons, mds = list(tmp_path.glob("*.json")), list(tmp_path.glob("*.md"))
    assert len(jsons) == 1 and len(mds) == 1 and jsons[0].stem == mds[0].stem
    data = json.loads(jsons[0].read_text())
    assert TOP_KEYS <= data.keys()
    assert data["benchmark"] == "kernels" and data["batch"] == 2 and data["repetitions"] == 1
    assert data["device"]["kind"] == "cpu" and data["device"]["name"]
    assert data["command"].endswith("--out " + str(tmp_path)) and "kernels.py" in data["command"]
    assert data["git_commit"]
    # Every op kind is there, each result complete, and a timed one has exactly one raw timing and a rate.
    assert {r["op"] for r in data["results"]} == set(kernels.GROUPS)
    assert len(data["results"]) == len(payload["results"])
    for r in data["results"]:
        assert RESULT_KEYS <= r.keys(), r["name"]
        assert r["status"] in ("ok", "not implemented", "error"), r
        if r["status"] == "ok":
            assert len(r["times_s"]) == 1 and r["median_s"] is not None
            if r["pass"] != "fused":
                assert r["rate"] > 0 and r["rate_unit"] in ("FLOP/s", "B/s")
        else:
            assert r["error"] and not r["times_s"]
        assert r["judgement"]["met"] is None  # targets are judged on GPUs only
    md = mds[0].read_text()
    assert "# Kernel benchmarks:" in md and "conv1.forward" in md and data["git_commit"] in md


def test_kernels_torch_side_runs_for_every_case_that_has_one(tmp_path):
    """Where PyTorch is installed, every case with a PyTorch counterpart is timed on it too: no case may report an
    error there (a renamed helper once made every conv, fc, ReLU, LRN and pool comparison a NameError, silently)."""
    pytest.importorskip("torch")
    payload = kernels.main(["--device", "cpu", "--tiny", "--batch", "2", "--reps", "1", "--warmup", "0",
                            "--out", str(tmp_path)])
    compared = [r for r in payload["results"] if r["torch"] is not None]
    assert {r["op"] for r in compared} >= {"conv2d", "linear", "relu", "lrn", "maxpool", "dropout"}
    errors = {r["name"]: r["torch"]["error"] for r in compared if "error" in r["torch"]}
    assert not errors


def test_op_filter_selects_by_kind_layer_and_name():
    cases = kernels.build_cases(kernels.tiny_net(), batch=1)
    assert {c.group for c in kernels.select(cases, "lrn,pool")} == {"lrn", "maxpool"}
    assert {c.layer for c in kernels.select(cases, "fc6")} == {"fc6"}
    assert [c.name for c in kernels.select(cases, "conv3.forward")] == ["conv3.forward"]
    try:
        kernels.select(cases, "nonsense")
    except SystemExit as exc:
        assert "unknown --op nonsense" in str(exc)
    else:
        raise AssertionError("an unknown --op must be refused")


def test_paper_shapes_per_tower():
    net = kernels.paper_net()
    assert [c.h_out for c in net.convs] == [55, 27, 13, 13, 13]
    assert net.fcs() == [("fc6", 9216, 2048, "relu"), ("fc7", 4096, 2048, "relu"), ("fc8", 4096, 500, "none")]


def test_gpu_targets_are_judged_against_this_runs_measurements():
    # Logic only (no GPU here): made-up inputs to judge(), never written to a results file.
    peaks = {"copy_bytes_per_s": 1000.0, "fma_flops_per_s": 1000.0}
    timed = {"status": "ok", "rate": 800.0, "ratio_ours_over_theirs": 1.1}
    assert kernels.judge(timed, "bandwidth", peaks, on_gpu=True)["met"] is True          # 80% >= 70%
    miss = kernels.judge(dict(timed, rate=600.0), "fma", peaks, on_gpu=True)             # 60% < 70%
    assert miss["met"] is False and miss["why"].startswith("TODO(human)")
    assert kernels.judge(timed, "cudnn", peaks, on_gpu=True)["met"] is True              # 1/1.1 >= 0.8
    assert kernels.judge(dict(timed, ratio_ours_over_theirs=1.3), "cudnn", peaks, on_gpu=True)["met"] is False
    no_cudnn = kernels.judge(dict(timed, ratio_ours_over_theirs=None), "cudnn", peaks, on_gpu=True)
    assert no_cudnn["met"] is None and "no cuDNN" in no_cudnn["why"]
    assert kernels.judge(timed, "bandwidth", {"error": "no CUDA"}, on_gpu=True)["met"] is None
    assert kernels.judge(timed, "bandwidth", peaks, on_gpu=False)["met"] is None           # CPU: report only
    assert kernels.judge({"status": "not implemented"}, "fma", peaks, on_gpu=True)["met"] is None


def test_vs_torch_network_has_our_layers():
    """benchmarks/vs_torch.py's PyTorch network has exactly our parameter count (same layers, groups=2 towers)."""
    import pytest

    from benchmarks import vs_torch
    torch = pytest.importorskip("torch")
    import alexnet_cuda

    ours = alexnet_cuda.AlexNet(10, ["cpu", "cpu"], "alexnet-small", 32, seed=0)
    theirs = vs_torch.torch_alexnet(torch, "alexnet-small", 10)
    assert sum(p.numel() for p in theirs.parameters()) == ours.num_parameters()
    assert theirs(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_speed_torch_side_computes_our_step():
    """benchmarks/cifar_speed.py: PyTorch's layers-18pct (ceil-mode pools, rnorm written with avg_pool2d on squares)
    gives our logits from the same weights, and one SGD step from zero momentum leaves the same weights (our update
    and torch's agree on a first step)."""
    torch = pytest.importorskip("torch")
    from benchmarks import cifar_speed

    rng = np.random.default_rng(0)
    images = (rng.standard_normal((4, 3, 32, 32)) * 50).astype(np.float32)
    labels = rng.integers(0, 10, 4).astype(np.int32)
    weights = cifar_speed.initial_weights()
    weights["conv1.weight"] *= 100  # initW 1e-4 leaves conv1's output too small for rnorm to matter
    ours = cifar_speed.OpsStep(weights, images, labels)
    ours.step()
    net, opt = cifar_speed.torch_net(torch, weights)
    logits = net(torch.from_numpy(images))
    np.testing.assert_allclose(ours.logits.numpy(), logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels.astype(np.int64))).backward()
    opt.step()
    for name, layer in (("conv1", net[0]), ("conv3", net[8]), ("fc10", net[12])):
        np.testing.assert_allclose(ours.w[f"{name}.weight"].numpy(), layer.weight.detach().numpy(), rtol=1e-4,
                                   atol=1e-6)


def test_cifar_speed_main_writes_results(tmp_path):
    from benchmarks import cifar_speed

    payload = cifar_speed.main(["--batch", "4", "--threads", "1", "--reps", "1", "--warmup", "0", "--out",
                                str(tmp_path)])
    (md,) = tmp_path.glob("cifar_speed_*.md")
    assert md.with_suffix(".json").exists()
    (result,) = payload["results"]
    assert result["ours_images_per_s"] > 0 and "conv2 weight grad" in result["breakdown_seconds"]
    assert payload["cpu"]["model_name"] and isinstance(payload["cpu"]["avx512f"], bool)


def test_cifar_speed_ops_step_is_the_engines_step():
    """cifar_speed's OpsStep (the op-by-op breakdown) updates the weights exactly as the engine's train_step of
    from_description(builtin("layers-18pct")) does, so the breakdown times the engine's arithmetic."""
    from benchmarks import cifar_speed

    rng = np.random.default_rng(0)
    images = (rng.standard_normal((4, 3, 32, 32)) * 50).astype(np.float32)
    labels = rng.integers(0, 10, 4).astype(np.int32)
    weights = cifar_speed.initial_weights()
    weights["conv1.weight"] *= 100
    model = cifar_speed.engine_model(weights)
    if model is None:
        pytest.skip("the engine does not build descriptions")
    model.train_step(images, labels, cifar_speed.LR)
    ours = cifar_speed.OpsStep(weights, images, labels)
    ours.step()
    state = model.state_dict()
    for name in cifar_speed.WEIGHTED:
        np.testing.assert_allclose(state[f"{name}.tower0.weight"], ours.w[f"{name}.weight"].numpy(), rtol=1e-5,
                                   atol=1e-7)
        np.testing.assert_allclose(state[f"{name}.tower0.bias"], ours.w[f"{name}.bias"].numpy(), rtol=1e-5, atol=1e-7)
