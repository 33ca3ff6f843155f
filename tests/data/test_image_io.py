"""frcnn/data/image_io.py: every image mode decodes to the right 8-bit RGB pixels or is reported
with the file named."""

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn.data import build_dataset
from frcnn.data.check import check_dataset
from frcnn.data.image_io import read_image
from frcnn.data.validation import DatasetError

GRADIENT = np.linspace(0, 1, 32 * 48).reshape(32, 48)  # 0 .. 1 over the image


def _expected_gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.rint(values * 255).astype(np.uint8)[None], 3, axis=0)


def _rgb_reference():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))


# mode -> (writer of the test image at a path, the expected uint8 [3, H, W] pixels)
MODES = {
    "I;16": (
        lambda p: Image.fromarray(np.rint(GRADIENT * 65535).astype(np.uint16)).save(p.with_suffix(".png")),
        _expected_gray(GRADIENT),
        ".png",
    ),
    "I": (
        lambda p: Image.fromarray(np.rint(GRADIENT * 65535).astype(np.int32)).save(p.with_suffix(".tif")),
        _expected_gray(GRADIENT),
        ".tif",
    ),
    "F": (
        lambda p: Image.fromarray(GRADIENT.astype(np.float32)).save(p.with_suffix(".tif")),
        _expected_gray(GRADIENT.astype(np.float32)),
        ".tif",
    ),
    "L": (
        lambda p: Image.fromarray(np.rint(GRADIENT * 255).astype(np.uint8)).save(p.with_suffix(".png")),
        _expected_gray(GRADIENT),
        ".png",
    ),
    "LA": (
        lambda p: Image.fromarray(np.rint(GRADIENT * 255).astype(np.uint8)).convert("LA").save(p.with_suffix(".png")),
        _expected_gray(GRADIENT),
        ".png",
    ),
    "1": (
        lambda p: Image.fromarray(GRADIENT > 0.5).save(p.with_suffix(".png")),
        _expected_gray((GRADIENT > 0.5).astype(np.float64)),
        ".png",
    ),
    "CMYK": (
        lambda p: _rgb_reference().convert("CMYK").save(p.with_suffix(".tif")),
        np.asarray(_rgb_reference().convert("CMYK").convert("RGB")).transpose(2, 0, 1),
        ".tif",
    ),
    "P": (
        lambda p: _rgb_reference().quantize(16).save(p.with_suffix(".png"), transparency=0),
        np.asarray(_rgb_reference().quantize(16).convert("RGB")).transpose(2, 0, 1),
        ".png",
    ),
    "RGBA": (
        lambda p: _rgb_reference().convert("RGBA").save(p.with_suffix(".png")),
        np.asarray(_rgb_reference()).transpose(2, 0, 1),
        ".png",
    ),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_image_mode_decodes_to_8_bit_rgb(mode, tmp_path):
    write, expected, suffix = MODES[mode]
    write(tmp_path / "image")
    path = tmp_path / f"image{suffix}"
    with Image.open(path) as image:
        assert image.mode == mode  # the file really has that mode
    decoded = read_image(str(path))
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 32, 48)
    assert np.abs(decoded.numpy().astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize(
    "pixels, reason",
    [
        (GRADIENT.astype(np.float32) * 1000, r"floating-point pixels \(mode F\) outside \[0, 1\]"),
        (np.full((32, 48), -5, dtype=np.int32), r"32-bit integer pixels \(mode I\) outside 0..65535"),
    ],
)
def test_pixel_values_that_cannot_be_scaled_are_reported_with_the_file(pixels, reason, tmp_path):
    path = tmp_path / "odd.tif"
    Image.fromarray(pixels).save(path)
    with pytest.raises(DatasetError, match=f"odd.tif: {reason}"):
        read_image(str(path))


def test_16_bit_images_train_and_check_as_their_pixels(tiny_shapes_cfg, tiny_shapes_root, tmp_path):
    """A 16-bit PNG used to decode as a solid white image, in training and in check_dataset.py."""
    import shutil

    root = tmp_path / "shapes"
    shutil.copytree(tiny_shapes_root, root)
    cfg = tiny_shapes_cfg(root=root)
    dataset = build_dataset(cfg, "test")
    jpeg = dataset.image_path(0)
    rgb = np.asarray(Image.open(jpeg).convert("L"), dtype=np.uint16)
    Image.fromarray(rgb * 257).save(jpeg, format="PNG")  # same name, 16-bit grayscale content
    image = read_image(jpeg)
    assert image.float().std() > 10 and np.abs(image[0].numpy().astype(int) - rgb).max() <= 1
    assert dataset[0][0].std() > 0.1  # the training sample is not a flat image

    Image.fromarray(GRADIENT.astype(np.float32) * 9).save(dataset.image_path(1), format="TIFF")
    (report,) = check_dataset(cfg, splits=("test",), num_workers=2)
    assert [(p.file, p.reason.split(" (")[0]) for p in report.errors] == [
        (dataset.image_path(1), "floating-point pixels")
    ]
