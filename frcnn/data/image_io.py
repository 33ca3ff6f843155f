"""Image decoding: any PIL-readable file to an RGB uint8 tensor, EXIF orientation applied."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

from frcnn.data.validation import DatasetError, Problem


def read_image(path: str) -> torch.Tensor:
    """Decode ``path`` to a uint8 Tensor[3, H, W] in RGB.

    Grayscale, CMYK, palette and RGBA images are converted to RGB (alpha dropped); the EXIF
    orientation tag is applied, so H, W are the size as displayed. A missing or unreadable
    file raises DatasetError naming it.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # palette with transparency: convert via RGBA
            array = np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise DatasetError(Problem(path, None, "image file not found")) from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(Problem(path, None, f"cannot decode image ({exc})")) from exc
    return torch.from_numpy(array).permute(2, 0, 1)


def read_image_checked(path: str, height: int, width: int) -> torch.Tensor:
    """:func:`read_image`, raising DatasetError when the decoded size is not the annotated one."""
    image = read_image(path)
    if tuple(image.shape[1:]) != (height, width):
        h, w = image.shape[1:]
        raise DatasetError(
            Problem(path, None, f"decoded size {w}x{h} (after EXIF orientation) differs from "
                                f"the annotated size {width}x{height}")
        )  # fmt: skip
    return image
