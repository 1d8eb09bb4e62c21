"""Read a story-world picture back: scene, art style, and which character stands in each slot.

Rule-based, no training, deterministic, well under a millisecond per frame on one core:

1. Background. Three colour statistics that characters never reach: the mean of the outer 2 px ring (dark in
   the outlined style's frame), the median of a band of sky and the median of a band of floor. The nearest of
   the 15 (scene, style) prototypes, measured on empty rendered backgrounds, gives scene and style together.
2. Characters. Every pixel of a slot's column (from above a jumping hat down to the feet) takes the label of
   the nearest colour of a palette holding the 8 body colours and every background colour of the detected
   scene and style (sky, ground, props, eyes, legs, hats, outline). The body colour with the most pixels
   wins if it covers at least ``MIN_BODY_PIXELS``; otherwise the slot is empty. Labelling against the whole
   palette, not thresholding distances, keeps blurred edges (sky-tree mixtures...) from reading as a body.

Pictures of any size are resized to 64 px first. Identity is read from the body colour only: shapes and
hats are redundant cues a small generator may lose, and a recoloured character must read as someone else.

Example::

    found = detect_frame(Image.open("frame.png"))
    found.scene, found.style, found.slots  # "lake", "flat", ("Pip", None, "Momo")
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from PIL import Image
from pydantic import Field

from seed_story.config import StrictModel
from seed_story.storyworld.draw import render_frame
from seed_story.storyworld.spec import (
    FEET,
    SLOTS,
    STYLES,
    WORLD,
    FrameTruth,
    SceneName,
    Slot,
    StyleName,
    background_palette,
    styled,
)

SIDE = 64
MIN_BODY_PIXELS = 30  # of 64x64; the smallest body (a sleeping triangle) covers ~95
_RING = 2
_SKY_ROWS = slice(5, 15)
_FLOOR_ROWS = slice(round(FEET * SIDE) + 3, SIDE - 4)  # below the feet and shadows, above the outlined frame
_INNER_COLS = slice(4, SIDE - 4)
_SLOT_ROWS = slice(round(0.3 * SIDE), round(FEET * SIDE) + 2)


class FrameDetection(StrictModel):
    """What the judge reads in one picture."""

    scene: SceneName
    style: StyleName
    slots: tuple[str | None, str | None, str | None] = Field(description="character name per slot, left to right")
    background_distance: float = Field(description="RGB distance to the nearest background prototype; large = odd")

    @property
    def characters(self) -> set[str]:
        return {name for name in self.slots if name is not None}

    def in_slot(self, slot: Slot) -> str | None:
        return self.slots[SLOTS.index(slot)]


def to_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """``image`` as a float32 (64, 64, 3) RGB array, resized if needed (box filter down, bilinear up)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    image = image.convert("RGB")
    if image.size != (SIDE, SIDE):
        resample = Image.Resampling.BOX if image.width > SIDE else Image.Resampling.BILINEAR
        image = image.resize((SIDE, SIDE), resample)
    return np.asarray(image, dtype=np.float32)


def _background_features(pixels: np.ndarray) -> np.ndarray:
    ring = np.concatenate(
        [
            pixels[:_RING].reshape(-1, 3),
            pixels[-_RING:].reshape(-1, 3),
            pixels[_RING:-_RING, :_RING].reshape(-1, 3),
            pixels[_RING:-_RING, -_RING:].reshape(-1, 3),
        ]
    )
    sky = np.median(pixels[_SKY_ROWS, _INNER_COLS].reshape(-1, 3), axis=0)
    floor = np.median(pixels[_FLOOR_ROWS, _INNER_COLS].reshape(-1, 3), axis=0)
    return np.concatenate([ring.mean(axis=0), sky, floor])


@functools.cache
def _prototypes() -> tuple[list[tuple[SceneName, StyleName]], np.ndarray]:
    keys = [(scene.name, style) for scene in WORLD.scenes for style in STYLES]
    feats = [_background_features(to_array(render_frame(FrameTruth(scene=sc, style=st), SIDE))) for sc, st in keys]
    return keys, np.stack(feats)


@functools.cache
def _palette(scene: SceneName, style: StyleName) -> np.ndarray:
    """Body colours first (one row per character, in cast order), then the background's colours."""
    bodies = [styled(c.colour, style) for c in WORLD.characters]
    return np.array(bodies + list(background_palette(scene, style)), dtype=np.float32)


def _slot_identities(pixels: np.ndarray, scene: SceneName, style: StyleName) -> tuple[str | None, ...]:
    palette = _palette(scene, style)
    region = pixels[_SLOT_ROWS]
    # Squared distances via |a|^2 - 2ab + |b|^2: one matrix product instead of a (H, W, K, 3) temporary.
    flat = region.reshape(-1, 3)
    dist = (flat**2).sum(1, keepdims=True) - 2 * flat @ palette.T + (palette**2).sum(1)
    labels = dist.argmin(axis=1).reshape(region.shape[:2])
    n_bodies = len(WORLD.characters)
    names: list[str | None] = []
    bounds = np.linspace(0, SIDE, len(SLOTS) + 1).round().astype(int)
    for left, right in itertools.pairwise(bounds):
        counts = np.bincount(labels[:, left:right].ravel(), minlength=len(palette))[:n_bodies]
        best = int(counts.argmax())
        names.append(WORLD.characters[best].name if counts[best] >= MIN_BODY_PIXELS else None)
    return tuple(names)


def detect_frame(image: Image.Image | np.ndarray) -> FrameDetection:
    """Scene, style and the character in each slot of a story-world picture (see the module docstring).

    Example::

        detect_frame(render_frame(truth)).slots == tuple(truth.in_slot(s) for s in SLOTS)  # True
    """
    pixels = to_array(image)
    keys, protos = _prototypes()
    dists = np.linalg.norm(protos - _background_features(pixels), axis=1)
    best = int(dists.argmin())
    scene, style = keys[best]
    slots = _slot_identities(pixels, scene, style)
    return FrameDetection(
        scene=scene,
        style=style,
        slots=slots,
        background_distance=round(float(dists[best]), 2),  # type: ignore[arg-type]
    )
