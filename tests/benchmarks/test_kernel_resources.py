"""benchmarks/kernel_resources.py (issue 22): the ptxas -v parser, the occupancy rules, and the check that no kernel
spills. The parser is tested on synthetic logs (a planted spill must fail the check, naming the kernel and the
bytes); the real check runs on the ptxas logs that a build configured with -DALEXNET_PTXAS_LOG=ON keeps (CI's
package build), and skips where there are none."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from benchmarks import kernel_resources as kr  # noqa: E402

GEMM = ("_ZN7alexnet4cuda4gemm11gemm_kernelINS1_10TileConfigILi128ELi128ELi8ELi8ELi2EEENS1_6MatrixILb0EEES6_"
        "NS1_11MatrixStoreEEEvT0_T1_T2_NS1_8GemmArgsE")
LRN = "_ZN7alexnet4cuda12_GLOBAL__N_119lrn_backward_kernelILi4EEEviPKfPf"


def ptxas_log(name, arch, regs, stores=0, loads=0, smem=0, callee=None):
    lines = [f"ptxas info    : Compiling entry function '{name}' for 'sm_{arch}'",
             f"ptxas info    : Function properties for {name}",
             f"    {stores} bytes stack frame, {stores} bytes spill stores, {loads} bytes spill loads",
             f"ptxas info    : Used {regs} registers, used 1 barriers, {smem} bytes smem, 400 bytes cmem[0]"]
    if callee:
        lines += [f"ptxas info    : Function properties for {callee[0]}",
                  f"    0 bytes stack frame, {callee[1]} bytes spill stores, {callee[2]} bytes spill loads"]
    return "\n".join(lines) + "\nptxas info    : Compile time = 1.0 ms\n"


def fake_build(tmp_path, text, source="linear.cu"):
    logdir = tmp_path / "build" / "ptxas"
    logdir.mkdir(parents=True)
    (logdir / f"{source}.ptxas.log").write_text(text)
    stem = logdir / source.removesuffix(".cu")
    stem.mkdir()
    (stem / "x.compute_90.ptx").write_text(
        f".visible .entry {GEMM}(\n\t.param .u64 p\n)\n.maxntid 256, 1, 1\n.minnctapersm 2\n{{\n}}\n")
    return tmp_path / "build"


def test_parser_reads_registers_spills_and_shared_memory():
    (e,) = kr.parse_ptxas_log(ptxas_log(GEMM, 90, 128, 68, 96, smem=17408), "linear.cu")
    assert (e.arch, e.registers, e.spill_stores, e.spill_loads, e.smem, e.barriers) == (90, 128, 68, 96, 17408, 1)


def test_a_spill_in_a_called_device_function_counts_for_the_kernel():
    (e,) = kr.parse_ptxas_log(ptxas_log(LRN, 80, 64, callee=("__internal_accurate_pow", 4, 8)))
    assert e.spill_bytes == (4, 8)
    assert "__internal_accurate_pow" in kr.spills([e])[0]


def test_launch_bounds_come_from_the_ptx():
    ptx = f".visible .entry {GEMM}(\n\t.param .u64 p\n)\n.maxntid 256, 1, 1\n.minnctapersm 2\n{{\n}}\n" \
          ".visible .entry other(\n)\n{\n}\n"
    assert kr.parse_ptx_bounds(ptx) == {GEMM: (256, 2), "other": (None, None)}


def test_readable_names():
    names = kr.demangle([GEMM, LRN])
    assert kr.readable(names[GEMM]) == "gemm_kernel<TileConfig<128, 128, 8, 8, 2>, Matrix<false>, Matrix<false>, MatrixStore>"
    assert kr.readable(names[LRN]) == "lrn_backward_kernel<4>"


@pytest.mark.parametrize("arch, regs, smem, threads, blocks, limit", [
    (90, 128, 17408, 256, 2, "registers"),   # 128 registers: 4 warps per sub-partition, 16 per SM
    (90, 155, 17408, 256, 1, "registers"),   # 160 after rounding: 3 warps per sub-partition, 12 per SM
    (90, 32, 0, 256, 8, "threads"),
    (86, 64, 0, 256, 4, "registers"),        # 1536 threads per SM, 6 blocks by threads, 4 by registers
    (80, 32, 100 * 1024, 128, 1, "shared memory"),
    (90, 16, 0, 32, 32, "blocks"),
])
def test_occupancy(arch, regs, smem, threads, blocks, limit):
    occ = kr.occupancy(kr.ARCHS[arch], regs, smem, threads)
    assert (occ["blocks_per_sm"], occ["limited_by"]) == (blocks, limit)


def test_every_launch_site_has_a_known_block_size():
    sites = kr.launch_sites(sorted(kr.CUDA_DIR.glob("*.cu")) + sorted(kr.CUDA_DIR.glob("*.cuh")))
    assert "gemm_kernel" in sites and "lrn_backward_kernel" in sites
    unknown = {k: v for k, v in sites.items() if not isinstance(v[0], int) and v[0] != "Cfg::kThreads"}
    assert not unknown, f"launch sites whose block size the report cannot resolve: {unknown}"


def test_a_planted_spill_fails_the_check_and_names_kernel_and_bytes(tmp_path, capsys):
    build = fake_build(tmp_path, ptxas_log(GEMM, 90, 128, 68, 96, smem=17408) + ptxas_log(LRN, 90, 40))
    status = kr.main(["--from-build", str(build), "--arch", "90", "--out", str(tmp_path / "out"), "--check",
                      "--baseline", ""])
    out = capsys.readouterr().out
    assert status == 1
    assert ("SPILL sm_90 gemm_kernel<TileConfig<128, 128, 8, 8, 2>, Matrix<false>, Matrix<false>, MatrixStore>: "
            "68 bytes spill stores, 96 bytes spill loads") in out
    assert "lrn_backward_kernel" not in out
    report = (tmp_path / "out" / "kernel_resources.md").read_text()
    assert "**Spills: 1**" in report and "| 256, 2 | 256 | 2 | 25.0% (registers) |" in report


def test_no_spill_passes_the_check(tmp_path):
    build = fake_build(tmp_path, ptxas_log(GEMM, 90, 128, smem=17408))
    assert kr.main(["--from-build", str(build), "--arch", "90", "--out", str(tmp_path / "out"), "--check",
                    "--baseline", ""]) == 0


def _build_logs():
    """The ptxas logs of a build of this checkout configured with -DALEXNET_PTXAS_LOG=ON (CI's pip install)."""
    where = Path(os.environ.get("ALEXNET_PTXAS_BUILD", ROOT / "build"))
    return where if where.is_dir() and any(where.rglob("*.ptxas.log")) else None


@pytest.mark.skipif(_build_logs() is None, reason="no build with -DALEXNET_PTXAS_LOG=ON under build/ (CI's has one)")
def test_no_kernel_of_the_build_spills():
    logs, ptx = kr.from_build(_build_logs())
    entries = kr.collect(logs, ptx, sorted(kr.CUDA_DIR.glob("*.cu")))
    assert entries, "the ptxas logs name no kernel"
    bad = kr.spills(entries)
    assert not bad, "kernels that spill (ptxas -v):\n" + "\n".join(bad)


def test_measured_times_join_by_mangled_name(tmp_path):
    """tools/gpu_verify.sh's Nsight Systems kernel summary lands beside the registers and the occupancy."""
    build = fake_build(tmp_path, ptxas_log(GEMM, 90, 128, smem=17408) + ptxas_log(LRN, 90, 40))
    csv = tmp_path / "kern_sum.csv"
    csv.write_text('"Time (%)","Total Time (ns)","Instances","Avg (ns)","Med (ns)","Min (ns)","Max (ns)",'
                   f'"StdDev (ns)","Name"\n90.0,2000000,4,500000.0,500000.0,1,1,0.0,"{GEMM}"\n')
    out = tmp_path / "out"
    assert kr.main(["--from-build", str(build), "--arch", "90", "--out", str(out), "--timings", str(csv),
                    "--baseline", ""]) == 0
    report = (out / "kernel_resources.md").read_text()
    assert "| 256, 2 | 256 | 2 | 25.0% (registers) | 4 | 2.000 | 500.0 |" in report
    assert "`lrn_backward_kernel<4>` | linear.cu | 40 |" in report and "| - | - | - |" in report
