"""Optional Lanczos upscaling of art so full-bleed prints reach a stated DPI."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def upscale_to(src: Path, dst: Path, size: tuple[int, int]) -> Path:
    """Write ``src`` resized to ``size`` with Lanczos to ``dst`` (skipped when ``dst`` already has that size).

    Example::

        upscale_to(Path("step_01.png"), Path("print/step_01.png"), (2625, 2625))
    """
    if dst.is_file():
        with Image.open(dst) as done:
            if done.size == size:
                return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        # PNG output carries no timestamp, so re-rendering writes identical bytes.
        im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(dst, format="PNG")
    return dst
