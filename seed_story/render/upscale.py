"""Art at print size: each picture enlarged the way its kind needs.

A flat-colour picture (a few colours cover it: drawn art, the story world's frames, pixel art) is enlarged by a
whole factor with nearest-neighbour, so its edges stay crisp; a photographic one with Lanczos. The HTML book
shows small flat pictures with ``image-rendering: pixelated`` for the same reason.
"""

from __future__ import annotations

import math

from PIL import Image

FLAT_COLOURS = 16  # this many most common colours ...
FLAT_SHARE = 0.9  # ... covering this share of the pixels make a picture flat-colour


def is_flat_colour(image: Image.Image) -> bool:
    """Whether a few colours cover nearly all of ``image`` (counted on at most 128 x 128 samples).

    Example::

        >>> is_flat_colour(Image.new("RGB", (64, 64), (200, 30, 40)))
        True
    """
    sample = image.convert("RGB")
    if max(sample.size) > 128:
        sample = sample.resize((min(128, sample.width), min(128, sample.height)), Image.Resampling.NEAREST)
    counts = sorted((n for n, _ in sample.getcolors(sample.width * sample.height) or []), reverse=True)
    return sum(counts[:FLAT_COLOURS]) >= FLAT_SHARE * sample.width * sample.height


def enlarge(image: Image.Image, size: tuple[int, int], flat: bool | None = None) -> tuple[Image.Image, str]:
    """``image`` enlarged to at least ``size``; returns the picture and the filter used (``nearest`` or
    ``lanczos``). Flat-colour art (``flat``, detected when ``None``) is enlarged by the smallest whole factor
    that reaches ``size`` with nearest-neighbour, the rest to exactly ``size`` with Lanczos.

    Example::

        big, how = enlarge(Image.open("step_01.png"), (2625, 2625))
    """
    if flat if flat is not None else is_flat_colour(image):
        factor = max(math.ceil(size[0] / image.width), math.ceil(size[1] / image.height))
        return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST), "nearest"
    return image.resize(size, Image.Resampling.LANCZOS), "lanczos"
