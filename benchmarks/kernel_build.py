"""
Builds of the fused GPU scoring kernel for CUDA architectures, without a GPU
(:mod:`line_plugin.plugin.kernel_build`): for every tile the autotuner chooses among, whether the
installed Triton compiles it, and the registers per thread, bytes spilled and shared memory of the
cubin. A build says nothing of speed; it shows that the GPU path compiles for a target with a
Triton release, before any GPU time is spent on it.

Writes ``benchmarks/results/kernel_build.json`` (one entry per Triton release: a run with another
release adds its entry and keeps the others) and ``kernel_build.md``. Usage::

    python benchmarks/kernel_build.py                       # sm_80, sm_90, sm_100
    python benchmarks/kernel_build.py --arch 90
    # another Triton release, installed apart (torch stays the one of the environment):
    pip install --no-deps --target /tmp/triton36 triton==3.6.0
    PYTHONPATH=/tmp/triton36 python benchmarks/kernel_build.py
"""

import argparse
import json
import platform
from pathlib import Path
from typing import Dict, List, Optional

from line_plugin.plugin import fused
from line_plugin.plugin.kernel_build import build

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {80: "A100", 90: "H100, H200", 100: "B200"}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, nargs="+", default=[80, 90, 100], help="e.g. 90 = sm_90")
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    return p.parse_args(argv)


def run(archs: List[int]) -> Dict:
    """:return: one row per (architecture, tile): the build, or why it failed"""
    rows = []
    for arch in archs:
        for tile in fused.CONFIGS:
            try:
                rows.append(build(tile, arch).as_dict())
            except RuntimeError as e:
                rows.append({"arch": arch, "tile": list(tile), "error": str(e).splitlines()[0]})
    return {"triton": fused.triton.__version__, "python": platform.python_version(), "rows": rows}


def markdown(runs: Dict[str, Dict]) -> str:
    lines = [
        "# The fused scoring kernel built for CUDA architectures, without a GPU",
        "",
        "`python benchmarks/kernel_build.py` (`line_plugin.plugin.kernel_build`): every tile of "
        "the autotuner compiled to a cubin by Triton for each architecture, its resources read "
        "by `cuobjdump -res-usage`. Tile: rows of the batch x classes x features per program, "
        "warps. Cells: registers per thread / bytes spilled / shared memory in bytes. These are "
        "builds, not runs: they show the GPU path compiles, not how fast it is.",
    ]
    for version in sorted(runs, key=lambda v: tuple(int(x) for x in v.split(".")[:3])):
        rows = runs[version]["rows"]
        archs = sorted({row["arch"] for row in rows})
        tiles = [tuple(t) for t in dict.fromkeys(tuple(row["tile"]) for row in rows)]
        cells = {(row["arch"], tuple(row["tile"])): row for row in rows}
        header = [f"sm_{a} ({NAMES[a]})" if a in NAMES else f"sm_{a}" for a in archs]
        lines += ["", f"## Triton {version}", "", "| tile | " + " | ".join(header) + " |"]
        lines.append("| --- " * (len(archs) + 1) + "|")
        for tile in tiles:
            out = []
            for arch in archs:
                row = cells[(arch, tile)]
                if "error" in row:
                    out.append("fails")
                else:
                    out.append(f"{row['registers']} / {row['spilled']} / {row['shared']}")
            lines.append(f"| {' x '.join(map(str, tile))} | " + " | ".join(out) + " |")
        failures: Dict[int, set] = {}
        for row in rows:
            if "error" in row:  # the reason without the tile it names
                failures.setdefault(row["arch"], set()).add(row["error"].split(": ", 1)[-1])
        for arch, reasons in sorted(failures.items()):
            lines += ["", f"sm_{arch} fails to build: {'; '.join(sorted(reasons))}."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if fused.triton is None:
        raise SystemExit("kernel_build.py needs Triton, which does not import here")
    result = run(args.arch)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "kernel_build.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[result["triton"]] = result
    path.write_text(json.dumps(runs, indent=1) + "\n")
    text = markdown(runs)
    (args.out / "kernel_build.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
