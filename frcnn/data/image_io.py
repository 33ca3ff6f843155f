"""Image decoding: any PIL-readable file to an RGB uint8 tensor, EXIF orientation applied.

8-bit modes (L, LA, P, PA, 1, CMYK, YCbCr, RGBA) go through PIL's RGB conversion. High bit depths
do not: PIL clips 16-bit values at 255 (a solid white image). They are scaled to 8 bits here:
16-bit integers (``I;16*``, and ``I`` holding values in 0..65535) by 255/65535, floats (``F``) in
[0, 1] by 255; other values cannot be mapped without guessing their range and are reported.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

from frcnn.data.validation import DatasetError, Problem


def _high_depth_to_rgb(image: Image.Image, path: str) -> np.ndarray:
    """uint8 [H, W, 3] of a 16-bit integer (``I;16*``, ``I``) or float (``F``) grayscale image."""
    pixels = np.asarray(image)
    if image.mode == "F":
        if not (np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1):
            raise DatasetError(
                Problem(
                    path,
                    None,
                    f"floating-point pixels (mode F) outside [0, 1] (range "
                    f"{pixels.min():g}..{pixels.max():g}): save it as an 8-bit image",
                )
            )
        gray = np.rint(pixels * 255.0)
    else:
        if pixels.min() < 0 or pixels.max() > 65535:
            raise DatasetError(
                Problem(
                    path,
                    None,
                    f"32-bit integer pixels (mode {image.mode}) outside 0..65535 "
                    f"(range {pixels.min()}..{pixels.max()}): save it as an 8-bit image",
                )
            )
        gray = np.rint(pixels.astype(np.float64) * (255.0 / 65535.0))
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)


def read_image(path: str) -> torch.Tensor:
    """Decode ``path`` to a uint8 Tensor[3, H, W] in RGB.

    Grayscale, CMYK, palette and RGBA images are converted to RGB (alpha dropped); 16-bit and
    float grayscale images are scaled to 8 bits (module docstring); the EXIF orientation tag is
    applied, so H, W are the size as displayed. A missing or unreadable file, or pixel values
    that cannot be scaled, raise DatasetError naming it.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I") or image.mode == "F":
                array = _high_depth_to_rgb(image, path)
            else:
                if image.mode in ("P", "PA") and ("transparency" in image.info or image.mode == "PA"):
                    image = image.convert("RGBA")  # palette with transparency: convert via RGBA
                array = np.array(image.convert("RGB"))
    except DatasetError:
        raise
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
