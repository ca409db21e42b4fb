"""What the compiler says about every CUDA kernel: registers, spills, shared memory, stack, launch bounds, and the
theoretical occupancy that follows at the block size each launch site uses. Needs nvcc, no GPU (issue 22).

    python benchmarks/kernel_resources.py                   # compile csrc/cuda/*.cu for sm_80/86/89/90, write reports
    python benchmarks/kernel_resources.py --check           # ... and exit 1 when any kernel spills
    python benchmarks/kernel_resources.py --arch 90 --source lrn.cu --out /tmp/kr   # one arch, one file
    python benchmarks/kernel_resources.py --from-build build --check   # reuse a build's logs (see below)
    python benchmarks/kernel_resources.py --arch 90 --timings kern_sum.csv  # + measured times (tools/gpu_verify.sh)

The compile is device-only (nvcc -fatbin -Xptxas -v --keep: no host compilation), one process per source file.
`--from-build` reads instead the ptxas logs and PTX that the package build keeps when configured with
-DALEXNET_PTXAS_LOG=ON (CMakeLists.txt; CI does so), so nothing is compiled twice.

Writes benchmarks/results/kernel_resources_sm_<arch>.json (every entry) and kernel_resources.md (the tables).

Occupancy: resident blocks per SM = the least of four limits (the CUDA occupancy calculator's rules, CUDA C++
Programming Guide, "Compute Capabilities", table "Technical Specifications per Compute Capability"):
  * registers: each warp takes ceil(32 * regs / 256) * 256 of the 16384 registers of each of the SM's 4
    sub-partitions, and a block's warps are spread over the 4;
  * shared memory: static + dynamic + 1 KB the runtime reserves per block (sm_80+), in 128-byte units, against the
    largest carveout (the driver picks the carveout that maximises occupancy);
  * threads (warps) per SM and blocks per SM.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "cuda"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class ArchLimits:
    name: str
    regs_per_sm: int
    smem_per_sm: int  # bytes, the largest carveout
    max_threads_per_sm: int
    max_blocks_per_sm: int
    smem_reserved_per_block: int = 1024
    reg_alloc_unit: int = 256  # registers, per warp
    sub_partitions: int = 4
    smem_alloc_unit: int = 128


# The architectures CMakeLists.txt builds (CMAKE_CUDA_ARCHITECTURES), from the Programming Guide's table.
ARCHS = {
    80: ArchLimits("A100 (sm_80)", 65536, 164 * 1024, 2048, 32),
    86: ArchLimits("RTX 30xx / A40 (sm_86)", 65536, 100 * 1024, 1536, 16),
    89: ArchLimits("L4 / RTX 40xx (sm_89)", 65536, 100 * 1024, 1536, 24),
    90: ArchLimits("H100 (sm_90)", 65536, 228 * 1024, 2048, 32),
}


@dataclass
class Callee:
    name: str
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0


@dataclass
class Entry:
    mangled: str
    arch: int
    source: str = ""
    registers: int = 0
    barriers: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    smem: int = 0  # static shared memory, bytes
    cumulative_stack: int = 0
    callees: list[Callee] = field(default_factory=list)
    name: str = ""  # readable
    max_threads: int | None = None  # __launch_bounds__ (PTX .maxntid)
    min_blocks: int | None = None  # __launch_bounds__ (PTX .minnctapersm)
    block_threads: int | None = None  # at the launch site
    dynamic_smem: int = 0
    occupancy: dict | None = None
    measured: dict | None = None  # from an Nsight Systems kernel summary (--timings): instances, total/avg ns

    @property
    def spill_bytes(self) -> tuple[int, int]:
        """Spill stores and loads of the kernel and of the device functions it calls."""
        return (self.spill_stores + sum(c.spill_stores for c in self.callees),
                self.spill_loads + sum(c.spill_loads for c in self.callees))


# ---- parsing ptxas -v --------------------------------------------------------------------------------------------
_COMPILING = re.compile(r"ptxas info\s*: Compiling entry function '([^']+)' for 'sm_(\d+)'")
_PROPERTIES = re.compile(r"ptxas info\s*: Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"ptxas info\s*: Used (\d+) registers(.*)")


def parse_ptxas_log(text: str, source: str = "") -> list[Entry]:
    """Entries of one `nvcc -Xptxas -v` log, in order. A "Function properties" block that follows an entry's own
    belongs to a device function the entry calls (e.g. __internal_accurate_pow): its spills count for the entry."""
    entries: list[Entry] = []
    current: Entry | None = None
    target = None  # the Entry or Callee the next stack-frame line describes
    for line in text.splitlines():
        if m := _COMPILING.search(line):
            current = Entry(mangled=m.group(1), arch=int(m.group(2)), source=source)
            entries.append(current)
            target = None
        elif m := _PROPERTIES.search(line):
            if current is None:
                target = None
            elif m.group(1) == current.mangled:
                target = current
            else:
                target = Callee(m.group(1))
                current.callees.append(target)
        elif (m := _FRAME.search(line)) and target is not None:
            target.stack, target.spill_stores, target.spill_loads = (int(g) for g in m.groups())
            target = None
        elif (m := _USED.search(line)) and current is not None:
            current.registers = int(m.group(1))
            rest = m.group(2)
            for value, what in re.findall(r"(\d+) (barriers|bytes smem|bytes cumulative stack size)", rest):
                if what == "barriers":
                    current.barriers = int(value)
                elif what == "bytes smem":
                    current.smem = int(value)
                else:
                    current.cumulative_stack = int(value)
    return entries


def parse_ptx_bounds(ptx: str) -> dict[str, tuple[int | None, int | None]]:
    """{mangled entry: (max threads, min blocks per SM)} from the PTX's .maxntid / .minnctapersm directives."""
    bounds = {}
    for m in re.finditer(r"\.entry\s+(\S+)\s*\((.*?)\)\s*([^{]*)\{", ptx, re.S):
        directives = m.group(3)
        nt = re.search(r"\.maxntid\s+(\d+)\s*,\s*(\d+)\s*,\s*(\d+)", directives)
        mb = re.search(r"\.minnctapersm\s+(\d+)", directives)
        bounds[m.group(1)] = (math.prod(int(g) for g in nt.groups()) if nt else None, int(mb.group(1)) if mb else None)
    return bounds


# ---- names --------------------------------------------------------------------------------------------------------
def demangle(names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    filt = shutil.which("c++filt")
    if filt is None:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.splitlines()))


def readable(demangled: str) -> str:
    """`void alexnet::cuda::(anonymous namespace)::lrn_backward_kernel<4, (alexnet::lrn::PowMode)3>(int, ...)` ->
    `lrn_backward_kernel<4, (lrn::PowMode)3>`: no return type, parameters or project namespaces."""
    s = demangled
    s = s.replace("(anonymous namespace)::", "")
    if s.startswith("void "):
        s = s[5:]
    # drop the parameter list: the last top-level parenthesised group
    depth = 0
    for i, ch in enumerate(s):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and i > 0 and s[i - 1] != " ":
            s = s[:i]
            break
    for ns in ("alexnet::cuda::gemm::", "alexnet::cuda::", "alexnet::"):
        s = s.replace(ns, "")
    return s


_TILE = re.compile(r"TileConfig<(\d+), (\d+), (\d+), (\d+), (\d+)>")


def tile_of(name: str) -> tuple[int, ...] | None:
    m = _TILE.search(name)
    return tuple(int(g) for g in m.groups()) if m else None


# ---- launch sites -------------------------------------------------------------------------------------------------
_LAUNCH = re.compile(r"\b(\w+)\s*(?:<[^;{}]*?>)?\s*<<<\s*(.+?)>>>", re.S)


def _split_top(args: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in args:
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def launch_sites(sources: list[Path]) -> dict[str, tuple[int | str, int]]:
    """{kernel base name: (block threads, dynamic shared bytes)} from the `<<<grid, block, smem, stream>>>` of every
    launch in csrc/cuda, resolving `constexpr int` constants and `dim3 name(x, y)` of the same file. A block size
    that depends on a template parameter (the GEMM's Cfg::kThreads) stays a string; entries resolve it."""
    sites: dict[str, tuple[int | str, int]] = {}
    for path in sources:
        text = re.sub(r"//[^\n]*", "", path.read_text())  # not the launches that comments mention
        consts = {}
        for decl in re.findall(r"constexpr int ([^;]+);", text):
            for m in re.finditer(r"(\w+)\s*=\s*([^,]+)", decl):
                consts[m.group(1)] = m.group(2).strip()
        for m in re.finditer(r"dim3 (\w+)\(([^;]*)\);", text):
            consts[m.group(1)] = "*".join(f"({a})" for a in _split_top(m.group(2)))

        def value(expr: str, depth: int = 0) -> int | str:
            expr = expr.strip()
            if m := re.fullmatch(r"dim3\((.*)\)", expr):
                expr = "*".join(f"({a})" for a in _split_top(m.group(1)))
            resolved = re.sub(r"(?<!::)\b[A-Za-z_]\w*\b", lambda t: f"({consts[t.group(0)]})" if t.group(0) in consts else t.group(0), expr)
            if resolved != expr and depth < 5:
                return value(resolved, depth + 1)
            try:
                return int(eval(resolved, {"__builtins__": {}}))  # noqa: S307 - integer constants of our sources
            except Exception:
                return expr

        for m in _LAUNCH.finditer(text):
            args = _split_top(m.group(2))
            block = value(args[1]) if len(args) > 1 else "?"
            smem = value(args[2]) if len(args) > 2 else 0
            prev = sites.get(m.group(1))
            if prev is not None and prev[0] != block:
                block = f"{prev[0]} or {block}"
            sites[m.group(1)] = (block, smem if isinstance(smem, int) else 0)
    return sites


def block_threads_of(entry: Entry, sites: dict) -> int | None:
    base = entry.name.split("<", 1)[0]
    block = sites.get(base, (None, 0))[0]
    if isinstance(block, int):
        return block
    tile = tile_of(entry.name)
    if block == "Cfg::kThreads" and tile:
        bm, bn, tm, tn, _ = tile
        return (bm // tm) * (bn // tn)
    return entry.max_threads  # unknown launch site: assume the launch bounds' block


# ---- occupancy ----------------------------------------------------------------------------------------------------
def occupancy(limits: ArchLimits, registers: int, smem_bytes: int, threads: int) -> dict:
    warps = math.ceil(threads / 32)
    max_warps = limits.max_threads_per_sm // 32
    by_threads = max_warps // warps
    regs_per_warp = math.ceil(max(registers, 1) * 32 / limits.reg_alloc_unit) * limits.reg_alloc_unit
    per_partition = limits.regs_per_sm // limits.sub_partitions
    by_regs = (per_partition // regs_per_warp) * limits.sub_partitions // warps
    smem_block = math.ceil((smem_bytes + limits.smem_reserved_per_block) / limits.smem_alloc_unit) * limits.smem_alloc_unit
    by_smem = limits.smem_per_sm // smem_block
    # (on a tie the first named is reported: the hard per-SM caps before the per-kernel resources)
    limits_by = {"threads": by_threads, "blocks": limits.max_blocks_per_sm, "registers": by_regs, "shared memory": by_smem}
    blocks = min(limits_by.values())
    limiter = min(limits_by, key=lambda k: limits_by[k])
    return {"threads": threads, "blocks_per_sm": blocks, "warps_per_sm": blocks * warps,
            "occupancy": round(blocks * warps / max_warps, 4), "limited_by": limiter}


# ---- compiling ----------------------------------------------------------------------------------------------------
def nvcc_path() -> str | None:
    return os.environ.get("NVCC") or shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


def compile_source(nvcc: str, src: Path, archs: list[int], work: Path) -> tuple[str, Path]:
    keep = work / src.stem
    keep.mkdir(parents=True, exist_ok=True)
    cmd = [nvcc, "-std=c++17", "-O3", f"-I{ROOT / 'csrc'}", "-fatbin", "-Xptxas", "-v", "--keep", "--keep-dir", str(keep),
           "-o", str(keep / f"{src.stem}.fatbin"), str(src)]
    for a in archs:
        cmd[1:1] = ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc failed on {src.name}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr, keep


def collect(logs: list[tuple[str, str]], ptx_files: list[Path], sources: list[Path]) -> list[Entry]:
    """logs: (source name, ptxas -v text). Fills in names, launch bounds, block sizes and occupancy."""
    entries = [e for source, text in logs for e in parse_ptxas_log(text, source)]
    bounds = {}
    for p in ptx_files:
        bounds.update(parse_ptx_bounds(p.read_text(errors="replace")))
    names = demangle(sorted({e.mangled for e in entries}))
    sites = launch_sites(sources)
    for e in entries:
        e.name = readable(names.get(e.mangled, e.mangled))
        e.max_threads, e.min_blocks = bounds.get(e.mangled, (None, None))
        base = e.name.split("<", 1)[0]
        e.dynamic_smem = sites.get(base, (None, 0))[1]
        e.block_threads = block_threads_of(e, sites)
        if e.arch in ARCHS and e.block_threads:
            e.occupancy = occupancy(ARCHS[e.arch], e.registers, e.smem + e.dynamic_smem, e.block_threads)
    # the same kernel can appear in several logs (a header's kernel instantiated by two sources): keep one
    unique = {}
    for e in entries:
        unique.setdefault((e.arch, e.name), e)
    return sorted(unique.values(), key=lambda e: (e.arch, e.source, e.name))


def spills(entries: list[Entry]) -> list[str]:
    """One line per spilling entry: the kernel, the architecture and the bytes."""
    out = []
    for e in entries:
        stores, loads = e.spill_bytes
        if stores or loads:
            where = f" (with the device functions it calls: {', '.join(c.name for c in e.callees if c.spill_stores or c.spill_loads)})" if (
                stores, loads) != (e.spill_stores, e.spill_loads) else ""
            out.append(f"sm_{e.arch} {e.name}: {stores} bytes spill stores, {loads} bytes spill loads{where} "
                       f"[{e.registers} registers, {e.source}]")
    return out


# ---- measured times (a GPU run: tools/gpu_verify.sh) ---------------------------------------------------------------
def read_kernel_times(csv_path: Path) -> dict[str, dict]:
    """{mangled name: {instances, total_ns, avg_ns}} from `nsys stats --report cuda_gpu_kern_sum:mangled --format
    csv` (columns "Total Time (ns)", "Instances", "Avg (ns)", ..., "Name")."""
    import csv

    times = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(line for line in f if line.strip() and not line.startswith("NOTICE")):
            name = row.get("Name", "").strip()
            if not name:
                continue
            times[name] = {"instances": int(float(row["Instances"])), "total_ns": float(row["Total Time (ns)"]),
                           "avg_ns": float(row["Avg (ns)"])}
    return times


def attach_times(entries: list[Entry], times: dict[str, dict], arch: int) -> None:
    for e in entries:
        if e.arch == arch and e.mangled in times:
            e.measured = times[e.mangled]


# ---- reports ------------------------------------------------------------------------------------------------------
def entry_json(e: Entry) -> dict:
    d = asdict(e)
    d["spill_stores_total"], d["spill_loads_total"] = e.spill_bytes
    return d


def fmt_bounds(e: Entry) -> str:
    if e.max_threads is None:
        return "-"
    return f"{e.max_threads}" + (f", {e.min_blocks}" if e.min_blocks else "")


def toolkit_version() -> str:
    nvcc = nvcc_path()
    if nvcc is None:
        return "unknown"
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    return next((line for line in out if "release" in line), out[-1] if out else "unknown")


def markdown(entries: list[Entry], archs: list[int], baseline: dict[int, list[dict]] | None) -> str:
    lines = ["# Kernel resources (ptxas -v)", "",
             "Written by `python benchmarks/kernel_resources.py` (issue 22): what `ptxas -v` reports for every kernel",
             "instantiation in `csrc/cuda/*.cu`, and the theoretical occupancy at the block size of its launch site.",
             "No GPU was used: occupancy is the occupancy calculator's, from each architecture's limits.",
             f"nvcc: {toolkit_version()}.", ""]
    bad = spills(entries)
    lines += [f"**Spills: {'none' if not bad else len(bad)}** ({len(entries)} entries over "
              f"{', '.join(f'sm_{a}' for a in archs)}).", ""]
    lines += [f"- {b}" for b in bad]
    gemm = [e for e in entries if tile_of(e.name)]
    if gemm:
        lines += ["", "## GEMM tiles: registers and occupancy", "",
                  "Max over each tile's instantiations (loaders x epilogues); occupancy = resident warps / max warps.", ""]
        lines += ["| tile | arch | launch bounds: min blocks | registers (max) | spill st/ld (max) | blocks/SM | occupancy |"
                  + (" before: min blocks | registers | spill st/ld | blocks/SM | occupancy |" if baseline else ""),
                  "|---|---|---|---|---|---|---|" + ("---|---|---|---|---|" if baseline else "")]
        for arch in archs:
            for tile, row in _tile_summary([entry_json(e) for e in gemm if e.arch == arch]).items():
                cells = f"| {tile} | sm_{arch} | {row['min']} | {row['regs']} | {row['st']}/{row['ld']} | {row['blocks']} | {row['occ']:.1%} |"
                if baseline:
                    old = _tile_summary([d for d in baseline.get(arch, []) if tile_of(d["name"])]).get(tile)
                    cells += (f" {old['min']} | {old['regs']} | {old['st']}/{old['ld']} | {old['blocks']} | {old['occ']:.1%} |" if old
                              else " - | - | - | - | - |")
                lines.append(cells)
    for arch in archs:
        timed = any(e.measured for e in entries if e.arch == arch)
        lines += ["", f"## sm_{arch}: {ARCHS[arch].name}" if arch in ARCHS else f"## sm_{arch}", "",
                  "| kernel | source | regs | spill st/ld | stack | smem static + dyn | launch bounds | block | blocks/SM | occupancy (limit) |"
                  + (" launches | total ms | avg us |" if timed else ""),
                  "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if timed else "")]
        if timed:
            lines.insert(-2, "Measured times: Nsight Systems over the run named in the results' header (tools/gpu_verify.sh).\n")
        for e in (e for e in entries if e.arch == arch):
            st, ld = e.spill_bytes
            occ = e.occupancy
            occ_cell = f"{occ['occupancy']:.1%} ({occ['limited_by']})" if occ else "-"
            row = (f"| `{e.name}` | {e.source} | {e.registers} | {st}/{ld} | {e.stack} | {e.smem} + {e.dynamic_smem} "
                   f"| {fmt_bounds(e)} | {e.block_threads or '-'} | {occ['blocks_per_sm'] if occ else '-'} | {occ_cell} |")
            if timed:
                m = e.measured
                row += (f" {m['instances']} | {m['total_ns'] / 1e6:.3f} | {m['avg_ns'] / 1e3:.1f} |" if m else " - | - | - |")
            lines.append(row)
    return "\n".join(lines) + "\n"


def _tile_summary(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for d in rows:
        if not d["name"].startswith("gemm_kernel"):
            continue
        bm, bn, tm, tn, min_blocks = tile_of(d["name"])
        tile = f"{bm}x{bn} ({tm}x{tn} per thread)"  # the launch bounds' min blocks is a column: it is what changed
        occ = d.get("occupancy") or {}
        st = d.get("spill_stores_total", d["spill_stores"])
        ld = d.get("spill_loads_total", d["spill_loads"])
        r = out.setdefault(tile, {"regs": 0, "st": 0, "ld": 0, "blocks": 10**9, "occ": 1.0, "min": min_blocks})
        r["regs"] = max(r["regs"], d["registers"])
        r["st"], r["ld"] = max(r["st"], st), max(r["ld"], ld)
        r["blocks"] = min(r["blocks"], occ.get("blocks_per_sm", 0))
        r["occ"] = min(r["occ"], occ.get("occupancy", 0.0))
    return out


def write_reports(entries: list[Entry], archs: list[int], out: Path, baseline_suffix: str | None, suffix: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    baseline = None
    if baseline_suffix:
        baseline = {}
        for a in archs:
            p = out / f"kernel_resources_sm_{a}{baseline_suffix}.json"
            if p.exists():
                baseline[a] = json.loads(p.read_text())["entries"]
        baseline = baseline or None
    for a in archs:
        rows = [entry_json(e) for e in entries if e.arch == a]
        meta = {"arch": f"sm_{a}", "nvcc": toolkit_version(), "limits": asdict(ARCHS[a]) if a in ARCHS else None,
                "entries": rows}
        (out / f"kernel_resources_sm_{a}{suffix}.json").write_text(json.dumps(meta, indent=1) + "\n")
    md = out / f"kernel_resources{suffix}.md"
    md.write_text(markdown(entries, archs, baseline))
    return md


def from_build(build: Path) -> tuple[list[tuple[str, str]], list[Path]]:
    """The ptxas logs and PTX files that a build configured with -DALEXNET_PTXAS_LOG=ON keeps in <build>/ptxas."""
    dirs = sorted({p.parent for p in build.rglob("*.ptxas.log")}, key=lambda d: d.stat().st_mtime)
    if not dirs:
        raise SystemExit(f"kernel_resources: no *.ptxas.log under {build} (configure with -DALEXNET_PTXAS_LOG=ON)")
    logdir = dirs[-1]
    if len(dirs) > 1:
        print(f"kernel_resources: several builds under {build} keep ptxas logs; reading the newest, {logdir}",
              file=sys.stderr)
    logs = [(p.name.removesuffix(".ptxas.log"), p.read_text()) for p in sorted(logdir.glob("*.ptxas.log"))]
    return logs, sorted(logdir.rglob("*.ptx"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default=",".join(map(str, ARCHS)), help="comma-separated, default 80,86,89,90")
    ap.add_argument("--source", default="", help="comma-separated file names in csrc/cuda (default: all *.cu)")
    ap.add_argument("--from-build", type=Path, help="parse a build's kept ptxas logs instead of compiling")
    ap.add_argument("--out", type=Path, help="default benchmarks/results (a temporary folder with --source)")
    ap.add_argument("--suffix", default="", help="appended to the report names (e.g. _before)")
    ap.add_argument("--baseline", default="_before-issue22",
                    help="suffix of earlier JSON reports in --out to compare the GEMM tiles with ('' for none)")
    ap.add_argument("--check", action="store_true", help="exit 1 when any kernel spills")
    ap.add_argument("--timings", type=Path,
                    help="nsys stats --report cuda_gpu_kern_sum:mangled --format csv output of a GPU run: adds the "
                         "measured time per kernel (give one --arch, the GPU's)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    archs = [int(a.removeprefix("sm_")) for a in args.arch.split(",") if a]
    if args.out is None:  # a run over some sources must not overwrite the committed report of all of them
        args.out = Path(tempfile.mkdtemp(prefix="kernel_resources_")) if args.source else RESULTS
    sources = sorted(CUDA_DIR.glob("*.cu"))
    if args.source:
        wanted = set(args.source.split(","))
        sources = [s for s in sources if s.name in wanted]
    with tempfile.TemporaryDirectory(prefix="kernel_resources_") as tmp:
        if args.from_build:
            logs, ptx = from_build(args.from_build)
        else:
            nvcc = nvcc_path()
            if nvcc is None:
                print("kernel_resources: nvcc not found (set NVCC or put it on PATH)", file=sys.stderr)
                return 2
            with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
                done = list(pool.map(lambda s: compile_source(nvcc, s, archs, Path(tmp)), sources))
            logs = [(s.name, text) for s, (text, _) in zip(sources, done)]
            ptx = [p for _, keep in done for p in keep.glob("*.ptx")]
        entries = [e for e in collect(logs, ptx, sorted(CUDA_DIR.glob("*.cu")) + sorted(CUDA_DIR.glob("*.cuh")))
                   if e.arch in archs]
    if args.timings:
        times = read_kernel_times(args.timings)
        for a in archs:
            attach_times(entries, times, a)
        print(f"kernel_resources: measured times for {sum(e.measured is not None for e in entries)} of "
              f"{len(times)} kernels in {args.timings}")
    md = write_reports(entries, archs, args.out, args.baseline or None, args.suffix)
    bad = spills(entries)
    print(f"kernel_resources: {len(entries)} entries over {', '.join(f'sm_{a}' for a in archs)}; "
          f"{len(bad)} spill; report {md}")
    for b in bad:
        print(f"  SPILL {b}")
    return 1 if args.check and bad else 0


if __name__ == "__main__":
    sys.exit(main())
