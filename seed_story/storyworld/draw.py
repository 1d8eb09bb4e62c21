"""Draw a story-world picture from its ground truth: a cached bold background, then the characters.

Pictures are drawn at twice the asked size and box-reduced, which anti-aliases the edges the way a real
picture would be, at a fraction of a millisecond per frame. The same truth and size always give the same
pixels (no randomness here: the story generator decides everything).

Example::

    truth = FrameTruth(scene="lake", style="outlined",
                       characters=(Placement(name="Pip", slot="left", action="jumps"),))
    render_frame(truth, size=64).save("frame.png")
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from PIL import Image, ImageDraw

from seed_story.storyworld.spec import (
    BODY_SIZE,
    EYE_WHITE,
    FEET,
    FRAME_WIDTH,
    HAT_COLOURS,
    HORIZON,
    JUMP_HEIGHT,
    LEG_LENGTH,
    LEGS,
    OUTLINE,
    OUTLINE_WIDTH,
    PUPIL,
    RGB,
    SHORE,
    SLOT_X,
    WORLD,
    Character,
    FrameTruth,
    Placement,
    Prop,
    SceneName,
    StyleName,
    styled,
)

SUPERSAMPLE = 2
Point = tuple[float, float]


class _Pen:
    """Draws in unit coordinates with the style's colours and outlines."""

    def __init__(self, image: Image.Image, style: StyleName) -> None:
        self.draw = ImageDraw.Draw(image)
        self.side = image.width
        self.style = style
        self.outlined = style == "outlined"
        self.ow = OUTLINE_WIDTH * self.side

    def box(self, x0: float, y0: float, x1: float, y1: float, grow: float = 0.0) -> list[float]:
        s = self.side
        return [x0 * s - grow, y0 * s - grow, x1 * s + grow, y1 * s + grow]

    def ellipse(self, box: Sequence[float], colour: RGB, outline: bool = True) -> None:
        if outline and self.outlined:
            self.draw.ellipse(self.box(*box, grow=self.ow), fill=OUTLINE)
        self.draw.ellipse(self.box(*box), fill=styled(colour, self.style))

    def rect(self, box: Sequence[float], colour: RGB, outline: bool = True) -> None:
        if outline and self.outlined:
            self.draw.rectangle(self.box(*box, grow=self.ow), fill=OUTLINE)
        self.draw.rectangle(self.box(*box), fill=styled(colour, self.style))

    def polygon(self, points: Sequence[Point], colour: RGB, outline: bool = True) -> None:
        xy = [(x * self.side, y * self.side) for x, y in points]
        if outline and self.outlined:  # a line centred on each edge sticks out by ``ow``, like a dilation
            self.draw.line([*xy, xy[0], xy[1]], fill=OUTLINE, width=round(2 * self.ow), joint="curve")
        self.draw.polygon(xy, fill=styled(colour, self.style))

    def chord(self, box: Sequence[float], colour: RGB) -> None:
        """The upper half of the ellipse in ``box`` (a dome)."""
        if self.outlined:
            self.draw.chord(self.box(*box, grow=self.ow), 180, 360, fill=OUTLINE)
        self.draw.chord(self.box(*box), 180, 360, fill=styled(colour, self.style))

    def line(self, points: Sequence[Point], colour: RGB, width: float, outline: bool = False) -> None:
        xy = [(x * self.side, y * self.side) for x, y in points]
        if outline and self.outlined:
            self.draw.line(xy, fill=OUTLINE, width=round(width * self.side + 2 * self.ow))
        self.draw.line(xy, fill=styled(colour, self.style), width=max(1, round(width * self.side)))


def _prop(pen: _Pen, p: Prop) -> None:
    x, y, r = p.x, p.y, p.size
    if p.kind in ("sun", "moon", "dot"):
        pen.ellipse((x - r, y - r, x + r, y + r), p.colour, outline=p.kind != "dot")
    elif p.kind == "cloud":
        for dx, dy, k in ((-0.9, 0.2, 0.6), (0.9, 0.2, 0.6), (0.0, 0.0, 0.8)):
            cx, cy, rr = x + dx * r, y + dy * r, k * r
            pen.ellipse((cx - rr * 1.3, cy - rr, cx + rr * 1.3, cy + rr), p.colour, outline=False)
    elif p.kind == "tree":
        pen.rect((x - 0.018, y, x + 0.018, HORIZON + 0.02), p.detail or p.colour)
        pen.ellipse((x - r, y - 1.6 * r, x + r, y + 0.3 * r), p.colour)
    elif p.kind == "pine":
        pen.rect((x - 0.015, y + 0.5 * r, x + 0.015, HORIZON + 0.02), p.detail or p.colour)
        pen.polygon([(x, y - 1.4 * r), (x + 0.8 * r, y + 0.6 * r), (x - 0.8 * r, y + 0.6 * r)], p.colour)
    elif p.kind == "cactus":
        pen.line([(x - 0.055, y - 0.5 * r), (x - 0.055, y + 0.2 * r), (x, y + 0.2 * r)], p.colour, 0.03, outline=True)
        pen.rect((x - 0.02, y - r, x + 0.02, HORIZON + 0.02), p.colour)
    elif p.kind == "boat":
        pen.line([(x, y - 0.01), (x, y - 1.1 * r)], p.detail or p.colour, 0.012)
        pen.polygon(
            [(x + 0.01, y - 1.05 * r), (x + 0.01, y - 0.15 * r), (x + 0.7 * r, y - 0.15 * r)], p.detail or p.colour
        )
        pen.polygon(
            [(x - r, y - 0.1 * r), (x + r, y - 0.1 * r), (x + 0.7 * r, y + 0.3 * r), (x - 0.7 * r, y + 0.3 * r)],
            p.colour,
        )


@functools.lru_cache(maxsize=64)
def _background(scene: SceneName, style: StyleName, side: int) -> Image.Image:
    """The scene without characters, at the drawing resolution; callers copy it."""
    s = WORLD.scene(scene)
    image = Image.new("RGB", (side, side), styled(s.sky, style))
    pen = _Pen(image, style)
    pen.rect((0, HORIZON, 1, 1), s.ground, outline=False)
    if s.shore:
        pen.rect((0, SHORE, 1, 1), s.shore, outline=False)
    for p in s.props:
        _prop(pen, p)
    if pen.outlined:
        for y in (HORIZON, SHORE) if s.shore else (HORIZON,):
            pen.draw.line([(0, y * side), (side, y * side)], fill=OUTLINE, width=round(pen.ow))
    return image


def _body(pen: _Pen, shape: str, box: tuple[float, float, float, float], colour: RGB) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        pen.ellipse(box, colour)
    elif shape == "square":
        pen.rect(box, colour)
    elif shape == "triangle":
        pen.polygon([(cx, y0), (x1, y1), (x0, y1)], colour)
    else:
        pen.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], colour)


def _eyes(pen: _Pen, c: Character, cx: float, top: float, h: float, asleep: bool) -> None:
    # Eyes sit lower in shapes that are narrow at the top.
    ey = top + h * {"triangle": 0.62, "diamond": 0.45}.get(c.shape, 0.4)
    dx = 0.035 if c.shape == "triangle" else 0.045
    for ex in (cx - dx, cx + dx):
        if asleep:
            pen.line([(ex - 0.02, ey), (ex + 0.02, ey)], PUPIL, 0.014)
        else:
            pen.ellipse((ex - 0.022, ey - 0.022, ex + 0.022, ey + 0.022), EYE_WHITE, outline=False)
            pen.ellipse((ex - 0.011, ey - 0.008, ex + 0.011, ey + 0.014), PUPIL, outline=False)


def _hat(pen: _Pen, hat: str, cx: float, top: float) -> None:
    colour = HAT_COLOURS[hat]  # type: ignore[index]
    if hat == "top_hat":
        pen.rect((cx - 0.055, top - 0.1, cx + 0.055, top - 0.015), colour)
        pen.rect((cx - 0.09, top - 0.025, cx + 0.09, top + 0.005), colour, outline=False)
    elif hat == "beanie":
        pen.ellipse((cx - 0.022, top - 0.09, cx + 0.022, top - 0.046), colour)
        pen.chord((cx - 0.075, top - 0.07, cx + 0.075, top + 0.05), colour)
    else:
        pen.ellipse((cx - 0.12, top - 0.03, cx + 0.12, top + 0.012), colour)
        pen.rect((cx - 0.055, top - 0.085, cx + 0.055, top - 0.01), colour, outline=False)


def _character(pen: _Pen, p: Placement, floor_shadow: RGB) -> None:
    c = WORLD.character(p.name)
    w, h = BODY_SIZE[c.shape]
    cx = SLOT_X[p.slot] + (0.015 if p.action == "walks" else 0.0)
    asleep = p.action == "sleeps"
    if asleep:  # lying down: flatter, on the ground, no legs
        h *= 0.65
        bottom = FEET
    else:
        bottom = FEET - LEG_LENGTH - (JUMP_HEIGHT if p.action == "jumps" else 0.0)
        spread = {"walks": 0.075, "jumps": 0.055}.get(p.action, 0.045)
        knee = LEG_LENGTH * (0.6 if p.action == "jumps" else 1.0)
        if p.action == "jumps":
            pen.ellipse((cx - 0.1, FEET - 0.015, cx + 0.1, FEET + 0.015), floor_shadow, outline=False)
        for sx in (-1, 1):
            pen.line([(cx + sx * 0.035, bottom - 0.02), (cx + sx * spread, bottom + knee)], LEGS, 0.028)
    top = bottom - h
    colour = c.colour
    if p.action == "waves":  # one arm raised above the shoulder, in the body colour
        arm = [(cx + w / 2 - 0.03, top + 0.35 * h), (cx + w / 2 + 0.035, top - 0.06)]
        pen.line(arm, colour, 0.035, outline=True)
        ax, ay = arm[1]
        pen.ellipse((ax - 0.025, ay - 0.025, ax + 0.025, ay + 0.025), colour)
    _body(pen, c.shape, (cx - w / 2, top, cx + w / 2, bottom), colour)
    _eyes(pen, c, cx, top, h, asleep)
    if c.hat:
        _hat(pen, c.hat, cx, top)
    if asleep:  # a big "Z" above the sleeper
        zx, zy = cx + w / 2 - 0.02, top - 0.11
        pen.line([(zx, zy), (zx + 0.05, zy), (zx, zy + 0.05), (zx + 0.05, zy + 0.05)], EYE_WHITE, 0.016)


def render_frame(truth: FrameTruth, size: int = 64) -> Image.Image:
    """The picture of ``truth``, ``size`` x ``size`` RGB; deterministic.

    Example::

        image = render_frame(story.frames[0].truth, size=64)
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 px to show the world (got {size})")
    side = size * SUPERSAMPLE
    image = _background(truth.scene, truth.style, side).copy()
    pen = _Pen(image, truth.style)
    shadow = WORLD.scene(truth.scene).shadow
    for placement in truth.characters:
        _character(pen, placement, shadow)
    if pen.outlined:
        width = round(FRAME_WIDTH * side)
        pen.draw.rectangle([0, 0, side - 1, side - 1], outline=OUTLINE, width=width)
    return image.reduce(SUPERSAMPLE)
