"""The fixed definition of the synthetic story world: cast, scenes, art styles, layout and palettes.

Both the drawer (``draw``) and the judge (``judge``) read this module, so what is drawn
and what is detected can never drift apart. Everything is bold on purpose: a 64 px picture made by a small
diffusion model keeps colours, big shapes and positions, and loses fine detail. Identity is carried by a
saturated body colour (distinct per character, far from every background colour) and a bold shape; hats are
large but only a redundant cue.

Coordinates are fractions of the picture side (x right, y down), so one layout serves every size.

Example::

    WORLD.character("Pip").colour   # (230, 30, 40)
    styled(WORLD.character("Pip").colour, "pastel")
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field, model_validator

from seed_story.config import StrictModel

RGB = tuple[int, int, int]
Shape = Literal["circle", "square", "triangle", "diamond"]
Hat = Literal["top_hat", "beanie", "straw_hat"]
Slot = Literal["left", "centre", "right"]
Action = Literal["stands", "walks", "jumps", "waves", "sleeps"]
SceneName = Literal["meadow", "lake", "desert", "night_forest", "snow"]
StyleName = Literal["flat", "outlined", "pastel"]

SLOTS: tuple[Slot, ...] = ("left", "centre", "right")
ACTIONS: tuple[Action, ...] = ("stands", "walks", "jumps", "waves", "sleeps")
STYLES: tuple[StyleName, ...] = ("flat", "outlined", "pastel")

# Layout, as fractions of the side.
HORIZON = 0.55
FEET = 0.85  # where standing characters touch the ground
SHORE = 0.72  # lake only: water above, sand below
SLOT_X: dict[Slot, float] = {"left": 0.175, "centre": 0.5, "right": 0.825}  # clear of the outlined frame
JUMP_HEIGHT = 0.12
LEG_LENGTH = 0.05
# Body (width, height) per shape: about the same coloured area each, with a gap between neighbouring slots.
BODY_SIZE: dict[Shape, tuple[float, float]] = {
    "circle": (0.25, 0.25),
    "square": (0.22, 0.22),
    "triangle": (0.28, 0.27),
    "diamond": (0.28, 0.28),
}
OUTLINE_WIDTH = 0.032  # about 2 px at 64 px: survives a blur and a 32 px round trip
FRAME_WIDTH = 0.047  # the outlined style's dark frame, about 3 px at 64 px

# Colours shared by every scene.
OUTLINE: RGB = (25, 25, 35)
EYE_WHITE: RGB = (245, 245, 245)
PUPIL: RGB = (20, 20, 25)
LEGS: RGB = (45, 40, 40)
HAT_COLOURS: dict[Hat, RGB] = {"top_hat": (30, 30, 30), "beanie": (245, 245, 245), "straw_hat": (150, 100, 50)}
PASTEL_WHITE = 0.4  # the pastel style mixes every colour 40% towards white
SHADOW_DARKEN = 0.72


class Character(StrictModel):
    """A member of the cast: a name and a fixed look (body colour, shape, optional hat)."""

    name: str
    shape: Shape
    colour_name: str
    colour: RGB
    hat: Hat | None = None

    @property
    def description(self) -> str:
        """``"red circle"``, as the captions introduce the character."""
        return f"{self.colour_name} {self.shape}"


class Prop(StrictModel):
    """One simple background object, fixed per scene (so a scene's background never changes)."""

    kind: Literal["sun", "moon", "cloud", "tree", "pine", "cactus", "boat", "dot"]
    x: float
    y: float
    size: float = Field(gt=0)
    colour: RGB
    detail: RGB | None = Field(default=None, description="trunk of a tree, sail of a boat")


class Scene(StrictModel):
    """A bold background: sky and ground colours and a few props."""

    name: SceneName
    sky: RGB
    ground: RGB
    shore: RGB | None = Field(default=None, description="lake: a sand band below the water, where feet stand")
    props: tuple[Prop, ...] = ()

    @property
    def prop_colours(self) -> tuple[RGB, ...]:
        return tuple(c for p in self.props for c in (p.colour, p.detail) if c is not None)

    @property
    def floor(self) -> RGB:
        """The colour under the characters' feet."""
        return self.shore or self.ground

    @property
    def shadow(self) -> RGB:
        """A jumping character's shadow on the floor."""
        return tuple(round(c * SHADOW_DARKEN) for c in self.floor)  # type: ignore[return-value]


class WorldSpec(StrictModel):
    """The whole world; ``WORLD`` is the one instance."""

    characters: tuple[Character, ...]
    scenes: tuple[Scene, ...]
    styles: tuple[StyleName, ...] = STYLES

    def character(self, name: str) -> Character:
        for c in self.characters:
            if c.name == name:
                return c
        raise KeyError(f"no character {name!r} in the story world")

    def scene(self, name: str) -> Scene:
        for s in self.scenes:
            if s.name == name:
                return s
        raise KeyError(f"no scene {name!r} in the story world")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.characters)


def styled(rgb: RGB, style: StyleName) -> RGB:
    """``rgb`` as the style paints it (only the pastel style changes colours)."""
    if style != "pastel":
        return rgb
    return tuple(round(c + (255 - c) * PASTEL_WHITE) for c in rgb)  # type: ignore[return-value]


SUN: RGB = (255, 240, 170)
WHITE: RGB = (250, 250, 250)
WOOD: RGB = (120, 80, 45)
DARK_WOOD: RGB = (60, 40, 30)


def _prop(kind: str, x: float, y: float, size: float, colour: RGB, detail: RGB | None = None) -> Prop:
    return Prop(kind=kind, x=x, y=y, size=size, colour=colour, detail=detail)  # type: ignore[arg-type]


WORLD = WorldSpec(
    characters=(
        Character(name="Pip", shape="circle", colour_name="red", colour=(230, 30, 40)),
        Character(name="Momo", shape="square", colour_name="blue", colour=(35, 75, 235)),
        Character(name="Zara", shape="triangle", colour_name="yellow", colour=(250, 215, 0), hat="top_hat"),
        Character(name="Tiko", shape="diamond", colour_name="green", colour=(0, 190, 80)),
        Character(name="Luma", shape="circle", colour_name="pink", colour=(235, 40, 180), hat="beanie"),
        Character(name="Bram", shape="square", colour_name="orange", colour=(255, 130, 0), hat="straw_hat"),
        Character(name="Nell", shape="triangle", colour_name="cyan", colour=(0, 205, 215)),
        Character(name="Otto", shape="diamond", colour_name="purple", colour=(135, 50, 215)),
    ),
    scenes=(
        Scene(name="meadow", sky=(120, 190, 240), ground=(100, 175, 75), props=(
            _prop("sun", 0.84, 0.14, 0.07, SUN),
            _prop("cloud", 0.3, 0.13, 0.08, WHITE),
            _prop("tree", 0.52, 0.4, 0.09, (45, 120, 55), WOOD),
        )),
        Scene(name="lake", sky=(175, 215, 245), ground=(70, 130, 160), shore=(205, 190, 140), props=(
            _prop("boat", 0.5, 0.63, 0.12, WOOD, WHITE),
            _prop("cloud", 0.75, 0.12, 0.07, WHITE),
        )),
        Scene(name="desert", sky=(250, 222, 150), ground=(220, 180, 110), props=(
            _prop("sun", 0.2, 0.15, 0.09, (255, 245, 200)),
            _prop("cactus", 0.36, 0.47, 0.08, (100, 140, 80)),
            _prop("cactus", 0.9, 0.48, 0.07, (100, 140, 80)),
        )),
        Scene(name="night_forest", sky=(28, 34, 85), ground=(30, 70, 45), props=(
            _prop("moon", 0.2, 0.14, 0.07, (240, 240, 205)),
            _prop("dot", 0.55, 0.1, 0.015, (240, 240, 205)),
            _prop("dot", 0.72, 0.2, 0.015, (240, 240, 205)),
            _prop("dot", 0.9, 0.08, 0.015, (240, 240, 205)),
            _prop("pine", 0.38, 0.42, 0.1, (15, 55, 35), DARK_WOOD),
            _prop("pine", 0.68, 0.4, 0.11, (15, 55, 35), DARK_WOOD),
        )),
        Scene(name="snow", sky=(185, 200, 220), ground=(245, 248, 252), props=(
            _prop("pine", 0.12, 0.42, 0.1, (40, 100, 70), DARK_WOOD),
            _prop("pine", 0.6, 0.41, 0.11, (40, 100, 70), DARK_WOOD),
            _prop("dot", 0.35, 0.1, 0.015, WHITE),
            _prop("dot", 0.8, 0.16, 0.015, WHITE),
            _prop("dot", 0.5, 0.25, 0.015, WHITE),
        )),
    ),
)  # fmt: skip


@functools.cache
def background_palette(scene: SceneName, style: StyleName) -> tuple[RGB, ...]:
    """Every colour a frame of ``scene`` in ``style`` may show besides the characters' bodies."""
    s = WORLD.scene(scene)
    colours = [s.sky, s.ground, s.shadow, *s.prop_colours, EYE_WHITE, PUPIL, LEGS, *HAT_COLOURS.values()]
    if s.shore:
        colours.append(s.shore)
    if style == "outlined":
        colours.append(OUTLINE)
    return tuple(dict.fromkeys(styled(c, style) for c in colours))


class Placement(StrictModel):
    """A character in a picture: who, in which slot, doing what."""

    name: str
    slot: Slot
    action: Action


class FrameTruth(StrictModel):
    """What one picture shows; everything the drawer needs and the judge tries to recover."""

    scene: SceneName
    style: StyleName
    characters: tuple[Placement, ...] = Field(default=(), max_length=len(SLOTS))

    @model_validator(mode="after")
    def _check(self) -> FrameTruth:
        names = [p.name for p in self.characters]
        unknown = set(names) - set(WORLD.names)
        if unknown:
            raise ValueError(f"unknown characters {sorted(unknown)}; the cast is {list(WORLD.names)}")
        if len(set(names)) != len(names) or len({p.slot for p in self.characters}) != len(names):
            raise ValueError(f"a character or a slot appears twice in {self.characters}")
        return self

    def in_slot(self, slot: Slot) -> str | None:
        """The name of the character in ``slot``, or ``None``."""
        return next((p.name for p in self.characters if p.slot == slot), None)
