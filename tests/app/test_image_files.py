"""Reading image files for ``line-ood score``: odd but valid images read, bad files named."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from line_plugin.data import ImageFiles, find_images, read_image


def to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.resize((8, 8)), dtype=np.float32)).permute(2, 0, 1)


def jpeg_bytes() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG")
    return buffer.getvalue()


#: bad file name -> (contents, the reason read_image gives)
BAD = {
    "empty.png": (b"", "empty file"),
    "text.jpg": (b"this is no image\n", "not an image file"),
    "cut.jpg": (None, "runcated"),  # Pillow: "Truncated File Read" or "image file is truncated"
}


def write_bad(folder: Path, name: str) -> Path:
    contents, _ = BAD[name]
    if contents is None:
        whole = jpeg_bytes()
        contents = whole[: len(whole) // 2]
    path = folder / name
    path.write_bytes(contents)
    return path


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_file_is_named_with_its_reason(tmp_path, name):
    path = write_bad(tmp_path, name)
    with pytest.raises(ValueError, match="cannot read image") as caught:
        read_image(path)
    assert str(path) in str(caught.value) and BAD[name][1] in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", list(BAD))
def test_image_files_marks_a_bad_file_and_keeps_the_batch_shape(tmp_path, name):
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 12), (255, 0, 0)).save(good)
    files = ImageFiles([good, write_bad(tmp_path, name)], to_tensor)
    (x0, s0), (x1, s1) = files[0], files[1]
    assert (s0, s1) == (0, 1)
    assert x1.shape == x0.shape and not x1.any()
    assert files.error(0) is None and BAD[name][1] in files.error(1)


@pytest.mark.parametrize(
    "name, image",
    [
        ("gray.png", Image.new("L", (32, 32), 128)),
        ("rgba.png", Image.new("RGBA", (32, 32), (10, 20, 30, 40))),
        ("palette.gif", Image.new("RGB", (32, 32), (200, 10, 10)).convert("P")),
        ("deep.tif", Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16))),
        ("photo.webp", Image.new("RGB", (40, 30), (0, 90, 0))),
        ("ünïcødé 画像.png", Image.new("RGB", (32, 32), (1, 2, 3))),
    ],
)
def test_odd_images_read_as_rgb(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    assert read_image(path).mode == "RGB"
    assert ImageFiles([path], to_tensor)[0][1] == 0


def test_find_images_sorted_recursive_and_errors(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.PNG", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert find_images([tmp_path]) == [tmp_path / "a.jpg", tmp_path / "b" / "z.PNG"]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        find_images([tmp_path / "none"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        find_images([tmp_path / "empty"])
