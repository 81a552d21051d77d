"""
Does the threshold of ``line-ood fit`` keep its promise? The share of new in-distribution images
flagged, calibrated on unseen images against calibrated on held-out training images, measured
through the command line itself; then a folder of CIFAR-10 and MNIST images with three corrupt
files, scored with ``--report``.

For each backbone (default: resnet18 and vit_tiny):

1. the 10,000 JPEG CIFAR-10 test images, decoded, are written as PNG files (the same pixels)
   and split in two halves of 5,000, stratified by class (seed 0): ``calibration/`` and
   ``new/``;
2. ``line-ood fit --fit-samples N --calibration-folder calibration/``: LINe fitted on N
   training images, the threshold set on the 5,000 unseen calibration images;
3. ``line-ood fit --fit-samples N --calibration 0.1``: the former default, LINe fitted on 90 %
   of the N training images, the threshold set on the other 10 % (held-out training images);
4. ``line-ood score`` of ``new/`` with either state (``--report`` with the first): the share
   flagged, against the promise 1 - tpr (at most 1 - tpr + 1/(n+1) in expectation for n
   exchangeable calibration images);
5. from the scores of both halves under the first state, the flagged share over 200 random
   5,000 / 5,000 splits of the test set (mean and standard deviation), without running the
   backbone again.

Then the collection: 1,000 images of ``new/`` and 1,000 MNIST images as PNG, plus an empty
``.png``, a text file named ``.jpg`` and a JPEG cut in half, scored with the first resnet18 state
and ``--report``: rows, skips, exit status, page size.

Writes ``benchmarks/results/calibration.json`` and ``calibration.md``, the page of the
collection as ``benchmarks/results/calibration_report.html``.

Usage::

    python benchmarks/calibration.py                       # resnet18 and vit_tiny, N = 10,000
    python benchmarks/calibration.py --backbones resnet18 --fit-samples 2000
"""

import argparse
import io
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from harness import line_ood, write_png
from PIL import Image

from line_plugin import __version__, data
from line_plugin.calibration import calibration_split, flag, threshold_at_tpr
from line_plugin.plugin.state import read_state

RESULTS = Path(__file__).parent / "results"
TPR = 0.95


def export_test_set(root: Path) -> Tuple[List[Path], List[Path]]:
    """the CIFAR-10 test set as PNG files in ``root/calibration`` and ``root/new``"""
    test = data.CIFAR10JPEG(split="test")
    new, calibration = calibration_split(np.asarray(test.targets), len(test), 0.5, seed=0)
    calibration = write_png(test, calibration.tolist(), root / "calibration", "test")
    return calibration, write_png(test, new.tolist(), root / "new", "test")


def flagged_share(path: Path) -> Tuple[float, np.ndarray]:
    """:return: share flagged and the scores of a ``line-ood score --format json`` output"""
    result = json.loads(path.read_text())
    scores = np.asarray([r["score"] for r in result["rows"]])
    return result["summary"]["flagged"] / result["summary"]["scored"], scores


def measure(backbone: str, root: Path, fit_samples: int, workers: int) -> Dict:
    common = ["--backbone", backbone, "--fit-samples", str(fit_samples), "--seed", "0"]
    common += ["--tpr", str(TPR), "--workers", str(workers)]
    unseen, training = root / f"{backbone}_unseen.pt", root / f"{backbone}_training.pt"
    started = time.perf_counter()
    code, _, err = line_ood(
        "fit", *common, "--calibration-folder", str(root / "calibration"), "--out", str(unseen)
    )
    assert code == 0, err
    code, _, err = line_ood("fit", *common, "--calibration", "0.1", "--out", str(training))
    assert code == 0, err
    record = {"backbone": backbone, "fit_samples": fit_samples, "tpr": TPR}
    for name, state in (("unseen", unseen), ("training", training)):
        out = root / f"{backbone}_{name}.json"
        extra = ["--report", str(root / f"{backbone}_test.html")] if name == "unseen" else []
        code, _, err = line_ood(
            "score",
            "--state",
            str(state),
            str(root / "new"),
            "--format",
            "json",
            "--out",
            str(out),
            "--workers",
            str(workers),
            *extra,
        )
        assert code == 0, err
        share, scores = flagged_share(out)
        meta = read_state(state)[1]
        n = meta["calibration_images"]
        record[name] = {
            "calibration_images": n,
            "fit_images": meta["fit_images"],
            "threshold": meta["threshold"],
            "new_images": len(scores),
            "flagged": share,
            "bound": 1 - TPR + 1 / (n + 1),
        }
        if name == "unseen":
            record["report_bytes_5000"] = (root / f"{backbone}_test.html").stat().st_size
            record["unseen"]["random_splits"] = random_splits(meta["calibration_scores"], scores)
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def random_splits(calibration: List[float], new: np.ndarray, repeats: int = 200) -> Dict:
    """flagged share over random halves of all 10,000 test scores under one fitted detector"""
    everything = np.concatenate([np.asarray(calibration), new])
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(repeats):
        order = rng.permutation(len(everything))
        half = len(everything) // 2
        threshold = threshold_at_tpr(everything[order[:half]], TPR)
        shares.append(float(flag(everything[order[half:]], threshold).mean()))
    return {"repeats": repeats, "mean": float(np.mean(shares)), "sd": float(np.std(shares))}


def collection(root: Path, state: Path, new: List[Path]) -> Dict:
    """1,000 CIFAR-10 and 1,000 MNIST images with three corrupt files, scored with --report"""
    folder = root / "collection"
    (folder / "cifar10").mkdir(parents=True)
    for path in new[:1000]:
        shutil.copy(path, folder / "cifar10" / path.name)
    mnist = data.ood_set("mnist")
    write_png(
        mnist,
        np.random.default_rng(0).permutation(len(mnist))[:1000].tolist(),
        folder / "mnist",
        "mnist",
    )
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image\n")
    jpeg = io.BytesIO()
    Image.open(new[0]).save(jpeg, format="JPEG")
    (folder / "cut.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    report = RESULTS / "calibration_report.html"
    out = root / "collection.csv"
    code, _, err = line_ood(
        "score", "--state", str(state), str(folder), "--out", str(out), "--report", str(report)
    )
    rows = out.read_text().splitlines()[1:]
    top = [r.split(",")[0] for r in sorted(rows, key=lambda r: -float(r.split(",")[1]))[:24]]
    bottom = [r.split(",")[0] for r in sorted(rows, key=lambda r: float(r.split(",")[1]))[:24]]
    return {
        "files": 2003,
        "rows": len(rows),
        "skipped_lines": [line for line in err.splitlines() if "skipped '" in line],
        "exit_status": code,
        "summary_line": err.strip().splitlines()[-1],
        "report_bytes": report.stat().st_size,
        "most_ood_24_mnist": sum("/mnist/" in f for f in top),
        "most_id_24_cifar10": sum("/cifar10/" in f for f in bottom),
    }


def markdown(records: List[Dict], demo: Dict, command: str) -> str:
    lines = [
        f"Command: `{command}` (line_plugin {__version__}). Share of 5,000 new CIFAR-10 test "
        f"images flagged at --tpr {TPR} (promised: {100 * (1 - TPR):g} %).",
        "",
        "| backbone | calibrated on unseen test images (n) | flagged | over 200 random splits "
        "| calibrated on held-out training images (n) | flagged |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        u, t = r["unseen"], r["training"]
        s = u["random_splits"]
        lines.append(
            f"| {r['backbone']} | {u['calibration_images']:,} | {100 * u['flagged']:.2f} % "
            f"| {100 * s['mean']:.2f} ± {100 * s['sd']:.2f} % | {t['calibration_images']:,} "
            f"| {100 * t['flagged']:.2f} % |"
        )
    bound = records[0]["unseen"]["bound"]
    lines += [
        "",
        f"LINe fitted on {records[0]['unseen']['fit_images']:,} training images with an unseen "
        f"calibration, {records[0]['training']['fit_images']:,} with the held-out one. Bound "
        f"1 - tpr + 1/(n+1) for n = 5,000: {100 * bound:.2f} %.",
        "",
    ]
    if demo:
        lines += [
            f"Collection: {demo['files']:,} files (1,000 CIFAR-10 test, 1,000 MNIST, 3 corrupt), "
            f"scored with the resnet18 state calibrated on unseen images: {demo['rows']:,} rows, "
            f"{len(demo['skipped_lines'])} skipped, exit status {demo['exit_status']}; report "
            f"{demo['report_bytes'] / 1e6:.2f} MB; of the 24 most OOD images "
            f"{demo['most_ood_24_mnist']} are MNIST, of the 24 most ID "
            f"{demo['most_id_24_cifar10']} are CIFAR-10.",
            "",
        ]
    lines += [
        "Report size on the 5,000 new test images: "
        + ", ".join(f"{r['backbone']} {r['report_bytes_5000'] / 1e6:.2f} MB" for r in records),
        "",
    ]
    return "\n".join(lines)


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "vit_tiny"])
    parser.add_argument("--fit-samples", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--no-collection", action="store_true", help="skip the collection")
    parser.add_argument(
        "--name", default="calibration", help="results file names (default: calibration)"
    )
    args = parser.parse_args()
    command = "python benchmarks/calibration.py"
    if args.backbones != ["resnet18", "vit_tiny"]:
        command += " --backbones " + " ".join(args.backbones)
    if args.fit_samples != 10000:
        command += f" --fit-samples {args.fit_samples}"
    if args.no_collection:
        command += " --no-collection"
    if args.name != "calibration":
        command += f" --name {args.name}"
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _, new = export_test_set(root)
        records = []
        demo = {}
        for backbone in args.backbones:
            records.append(measure(backbone, root, args.fit_samples, args.workers))
            print(json.dumps(records[-1]), flush=True)
            if len(records) == 1 and not args.no_collection:  # after the first backbone
                demo = collection(root, root / f"{backbone}_unseen.pt", new)
                print(json.dumps(demo), flush=True)
            write_results(records, demo, command, args.name)  # each backbone's as they come
    print(markdown(records, demo, command))


def write_results(records: List[Dict], demo: Dict, command: str, name: str) -> None:
    result = {
        "command": command,
        "version": __version__,
        "python": platform.python_version(),
        "records": records,
        "collection": demo,
        "math": "bound = 1 - tpr + 1/(n+1)",
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(records, demo, command))


if __name__ == "__main__":
    main_()
