"""
Regenerate the state files of version 0.3.0 and what 0.3.0 scored with them, so that
tests/realdata/test_pipeline_files.py can hold every later version to them: a file of ``line-ood
fit`` (``state_0_3_0_cli.pt``: the shared resnet18, 60 training images, the paper's preset, a
threshold on 6 held-out ones) and one of ``LINe.save`` without metadata (``state_0_3_0_line.pt``:
40 training images, ``p_a = p_w = 0.5``, the clip at the 0.9 quantile), and the rows of
``line-ood score --format json`` with each on :func:`write_images` (``scores_0_3_0.json``).

Run from a copy of release 0.3.0 (commit 29fe4cc)::

    mkdir /tmp/v030 && git archive 29fe4cc | tar -x -C /tmp/v030
    PYTHONPATH=/tmp/v030 python tests/golden/make_state_0_3_0.py tests/golden
"""

import contextlib
import io
import json
import sys
from pathlib import Path
from typing import List

from PIL import Image


def write_images(folder: Path) -> List[Path]:
    """4 MNIST and 4 JPEG CIFAR-10 test images of the shared data, as PNG files (same pixels)"""
    from line_plugin import data

    folder.mkdir(parents=True, exist_ok=True)
    mnist = data.ood_set("mnist").x
    paths = []
    for i in range(4):
        paths.append(folder / f"mnist{i}.png")
        Image.fromarray(mnist[i]).save(paths[-1])
    test = data.CIFAR10JPEG(split="test")
    for i in range(4):
        paths.append(folder / f"cifar{i}.png")
        test.image(i).save(paths[-1])
    return paths


def score(state: Path, images: Path, *backbone: str) -> List[dict]:
    """the rows of ``line-ood score --format json``, their files by name"""
    from line_plugin.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["score", "--state", str(state), *backbone, "--format", "json", str(images)])
    assert code == 0
    rows = json.loads(out.getvalue())["rows"]
    return [{**row, "file": Path(row["file"]).name} for row in rows]


def main(folder: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    from line_plugin import LINe, __version__, data, zoo
    from line_plugin.cli import main as line_ood

    assert __version__ == "0.3.0", __version__
    torch.set_num_threads(1)
    images = folder / "images_0_3_0"
    write_images(images)
    cli = folder / "state_0_3_0_cli.pt"
    args = ["fit", "--backbone", "resnet18", "--fit-samples", "60", "--preset", "cifar10"]
    assert line_ood([*args, "--no-progress", "--out", str(cli)]) == 0
    model = zoo.load_model("resnet18")
    train = data.subset(data.CIFAR10JPEG(split="train", transform=model.transform), 40, seed=1)
    detector = LINe(*zoo.split_backbone(model), p_a=0.5, p_w=0.5, clip_quantile=0.9)
    plain = folder / "state_0_3_0_line.pt"
    detector.fit(DataLoader(train, batch_size=20), progress=False).save(plain)
    expected = {
        "version": __version__,
        "cli": score(cli, images),
        "line": score(plain, images, "--backbone", "resnet18"),
    }
    (folder / "scores_0_3_0.json").write_text(json.dumps(expected, indent=1) + "\n")
    for path in images.iterdir():
        path.unlink()
    images.rmdir()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
