"""The plot of a story-world story: who is where, frame by frame, and the caption of each frame.

One event per frame after the opening: a character enters (when one is alone), leaves (after waving goodbye
in the previous, quiet frame), moves to a free slot, changes action, or everyone travels to a new scene (at
most every ``MIN_FRAMES_PER_SCENE`` frames). There are always one or two characters on screen.

Example::

    frames = plan_story(random.Random(0), "flat", ("Pip", "Momo", "Zara"), n_frames=30)
    caption(random.Random(1), frames[0])  # "Once upon a time, a red circle named Pip lived in ..."
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from seed_story.storyworld import text
from seed_story.storyworld.spec import ACTIONS, SLOTS, WORLD, Action, FrameTruth, Placement, Slot, StyleName

Event = Literal["opening", "enter", "exit", "move", "act", "travel"]
# How often each event is drawn when it is possible (an impossible one, e.g. a third character, is skipped).
EVENT_WEIGHTS: dict[Event, float] = {"travel": 0.12, "enter": 0.35, "exit": 0.25, "move": 0.15, "act": 0.4}
MIN_FRAMES_PER_SCENE = 4
# Actions a character may start a scene or an entrance with (nobody arrives asleep).
LIVELY: tuple[Action, ...] = ("walks", "stands", "jumps", "waves")


@dataclass
class PlannedFrame:
    """A frame while the plot is written; ``leaving`` is filled in when the next frame is an exit."""

    event: Event
    truth: FrameTruth
    entered: tuple[str, ...] = ()
    leaving: tuple[str, ...] = ()
    returning: bool = False
    mover: str | None = None


@dataclass
class _Stage:
    rng: random.Random
    style: StyleName
    cast: tuple[str, ...]
    scene: str
    on: dict[str, Placement] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    frames: list[PlannedFrame] = field(default_factory=list)
    last_travel: int = 0

    def place(self, name: str, slot: Slot, action: Action) -> None:
        self.on[name] = Placement(name=name, slot=slot, action=action)

    def free_slots(self) -> list[Slot]:
        taken = {p.slot for p in self.on.values()}
        return [s for s in SLOTS if s not in taken]

    def snapshot(self, event: Event, entered: tuple[str, ...] = (), **extra: object) -> None:
        placements = tuple(sorted(self.on.values(), key=lambda p: SLOTS.index(p.slot)))
        truth = FrameTruth(scene=self.scene, style=self.style, characters=placements)  # type: ignore[arg-type]
        self.frames.append(PlannedFrame(event=event, truth=truth, entered=entered, **extra))  # type: ignore[arg-type]
        self.seen.update(entered)


def _possible_events(stage: _Stage, t: int) -> dict[Event, float]:
    possible: dict[Event, float] = {"act": EVENT_WEIGHTS["act"], "move": EVENT_WEIGHTS["move"]}
    if t - stage.last_travel >= MIN_FRAMES_PER_SCENE:
        possible["travel"] = EVENT_WEIGHTS["travel"]
    if len(stage.on) == 1 and any(n not in stage.on for n in stage.cast):
        possible["enter"] = EVENT_WEIGHTS["enter"]
    if len(stage.on) == 2 and stage.frames[-1].event in ("act", "move"):  # goodbyes happen in quiet frames
        possible["exit"] = EVENT_WEIGHTS["exit"]
    return possible


def _step(stage: _Stage, t: int) -> None:
    rng = stage.rng
    possible = _possible_events(stage, t)
    event = rng.choices(list(possible), weights=list(possible.values()))[0]
    if event == "travel":  # everyone on screen goes along
        stage.scene = rng.choice([s.name for s in WORLD.scenes if s.name != stage.scene])
        stage.last_travel = t
        names = list(stage.on)
        for name, slot in zip(names, rng.sample(SLOTS, len(names)), strict=True):
            stage.place(name, slot, rng.choice(LIVELY))
        stage.snapshot(event)
    elif event == "enter":
        name = rng.choice([n for n in stage.cast if n not in stage.on])
        stage.place(name, rng.choice(stage.free_slots()), rng.choice(LIVELY))
        stage.snapshot(event, (name,), returning=name in stage.seen)
    elif event == "exit":  # the leaver waves goodbye in the previous frame, while still visible
        name = rng.choice(list(stage.on))
        previous = stage.frames[-1]
        waving = tuple(
            p.model_copy(update={"action": "waves"}) if p.name == name else p for p in previous.truth.characters
        )
        previous.truth = previous.truth.model_copy(update={"characters": waving})
        previous.leaving = (name,)
        del stage.on[name]
        stage.snapshot(event)
    elif event == "move":
        name = rng.choice(list(stage.on))
        stage.place(name, rng.choice(stage.free_slots()), rng.choice(("walks", "walks", "jumps")))
        stage.snapshot(event, mover=name)
    else:
        current = stage.on[rng.choice(list(stage.on))]
        stage.place(current.name, current.slot, rng.choice([a for a in ACTIONS if a != current.action]))
        stage.snapshot(event)


def plan_story(rng: random.Random, style: StyleName, cast: tuple[str, ...], n_frames: int) -> list[PlannedFrame]:
    """``n_frames`` frames of one story of ``cast`` in ``style``, opening with one or two of its characters."""
    stage = _Stage(rng=rng, style=style, cast=cast, scene=rng.choice(WORLD.scenes).name)
    first = cast[: rng.choice((1, 2))]
    for name, slot in zip(first, rng.sample(SLOTS, len(first)), strict=True):
        stage.place(name, slot, rng.choice(LIVELY))
    stage.snapshot("opening", tuple(first))
    for t in range(1, n_frames):
        _step(stage, t)
    return stage.frames


def caption(rng: random.Random, frame: PlannedFrame) -> str:
    """The caption of a planned frame: what happened, then what everyone not yet described is doing."""
    truth = frame.truth
    placements = list(truth.characters)
    names = [p.name for p in placements]
    sentences: list[str] = []
    described: set[str] = set()
    if frame.event == "opening":
        sentences.append(text.opening_sentence(rng, names, truth.scene))
    elif frame.event == "travel":
        sentences.append(text.travel_sentence(rng, names, truth.scene))
    elif frame.event == "enter":
        newcomer = next(p for p in placements if p.name in frame.entered)
        others = [n for n in names if n != newcomer.name]
        sentences.append(text.entrance_sentence(rng, newcomer, others, frame.returning))
        described.add(newcomer.name)
    elif frame.event == "exit":
        sentences.append(text.alone_sentence(rng, names[0]))
    elif frame.event == "move":
        sentences.append(text.move_sentence(rng, next(p for p in placements if p.name == frame.mover)))
    for name in frame.leaving:
        sentences.append(text.farewell_sentence(rng, name, [n for n in names if n != name]))
        described.add(name)
    rest = [p for p in placements if p.name not in described]
    return " ".join([*sentences, *text.action_sentences(rng, rest, truth.scene)])
