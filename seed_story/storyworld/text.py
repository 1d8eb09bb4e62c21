"""Captions for story-world frames: varied sentence templates that always follow the picture.

Rules every caption keeps (the judge's metrics rely on them, and ``tests/test_storyworld.py`` checks them):

* it names every visible character, and no one else;
* it names the scene in the opening and whenever the scene changes, and never names another scene;
* a character who was not visible in the previous frame is named in a sentence with an entrance word
  (``ENTRANCE_WORDS``); words of that list appear in no other template;
* a character about to leave waves goodbye while still visible; the frame after, the leaver is not named.

Example::

    rng = random.Random(0)
    action_sentences(rng, truth.characters, scene="lake")  # "Pip jumped high on the left."
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence

from seed_story.storyworld.spec import SLOTS, WORLD, Action, FrameTruth, Placement, SceneName, Slot

# The entrance words the judge looks for; keep in sync with the entrance templates below.
ENTRANCE_WORDS = ("arrived", "appeared", "came", "joined", "showed", "returned", "turned")

SCENE_PHRASES: dict[SceneName, tuple[str, ...]] = {
    "meadow": ("the sunny meadow", "the green meadow", "a quiet meadow"),
    "lake": ("the blue lake", "the shore of the lake", "a calm lake"),
    "desert": ("the sandy desert", "the hot desert", "a wide desert"),
    "night_forest": ("the dark forest", "the forest at night", "the moonlit forest"),
    "snow": ("the snowy hills", "the cold snowfield", "a land of snow"),
}
SCENE_SHORT: dict[SceneName, str] = {
    "meadow": "in the meadow",
    "lake": "by the lake",
    "desert": "in the desert",
    "night_forest": "in the dark forest",
    "snow": "in the snow",
}
WHERE: dict[Slot, str] = {"left": "on the left", "centre": "in the middle", "right": "on the right"}
SIDE: dict[Slot, str] = {"left": "left", "centre": "middle", "right": "right"}
ACTION_PHRASES: dict[Action, tuple[str, ...]] = {
    "stands": ("stood still", "looked around", "stood and smiled", "waited patiently", "stood quietly"),
    "walks": ("walked slowly", "went for a stroll", "took a few steps", "strolled about", "walked happily"),
    "jumps": ("jumped high", "leapt into the air", "bounced up and down", "did a big jump", "hopped with joy"),
    "waves": ("waved hello", "waved happily", "raised an arm and waved", "waved at the sky"),
    "sleeps": ("fell asleep", "took a nap", "slept soundly", "snored softly", "had a little sleep"),
}
HAT_PHRASES = {"top_hat": "a black top hat", "beanie": "a white woolly hat", "straw_hat": "a brown straw hat"}

OPENINGS = (
    "Once upon a time, {intro} lived in {scene}.",
    "This is the story of {intro}, who lived in {scene}.",
    "One day in {scene}, there was {intro}.",
    "Long ago, {intro} spent the day in {scene}.",
)
ENTRANCES = (
    "Just then, {name} arrived {where}.",
    "Suddenly, {name} the {desc} appeared {where}.",
    "{name} came over to say hello to {others}.",
    "A little later, {name} joined {others}.",
    "Look! {name} showed up {where}.",
    "{name}, {a_desc}, came along {where}.",
)
RETURNS = ("{name} came back {where}.", "{name} returned {where}.", "Then {name} turned up again {where}.")
FAREWELLS = (
    "{name} waved goodbye.",
    "{name} waved goodbye to {others} and got ready to go home.",
    "{name} said goodbye with a wave.",
)
ALONE = ("Now {name} was alone.", "After the goodbye, only {name} stayed.", "{name} stayed behind on their own.")
TRAVELS = (
    "{names} travelled to {scene}.",
    "Later, {names} went all the way to {scene}.",
    "{names} set off on a trip to {scene}.",
    "The long walk took {names} to {scene}.",
    "Soon {names} reached {scene}.",
)
MOVES = ("{name} hurried over to the {side}.", "{name} moved to the {side}.", "{name} trotted across to the {side}.")
ONE_ACTION = ("{name} {act} {where}.", "{Where}, {name} {act}.", "{name} {act} {place}.")
TWO_ACTIONS = ("{a} {act_a} {where_a}, while {b} {act_b} {where_b}.", "{a} {act_a} and {b} {act_b}.")
SAME_ACTION = ("{a} and {b} both {act}.",)
# Picture descriptions (the caption corpus, not the stories): every visible character and its place, the scene.
DESCRIBE_ONE = ("{name} is {where}", "{where} is {name}", "{name} the {desc} stands {where}")
DESCRIBE = ("{Scene}: {who}.", "A picture of {scene}. {Who}.", "{Who}, {short}.")
DESCRIBE_EMPTY = ("{Scene}, with nobody there.", "Nobody is {short}.")


def join_names(names: Sequence[str]) -> str:
    """``"Pip"``, ``"Pip and Momo"``, ``"Pip, Momo and Zara"``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def with_article(phrase: str) -> str:
    """``"a red circle"``, ``"an orange square"``."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def introduce(rng: random.Random, name: str) -> str:
    """``"a red circle named Pip"`` or ``"Zara, a yellow triangle with a black top hat,"``-like phrases."""
    c = WORLD.character(name)
    hat = f" with {HAT_PHRASES[c.hat]}" if c.hat and rng.random() < 0.6 else ""
    return rng.choice((f"{with_article(c.description)}{hat} named {name}", f"{name} the {c.description}{hat}"))


def opening_sentence(rng: random.Random, names: Sequence[str], scene: SceneName) -> str:
    intro = join_names([introduce(rng, n) for n in names])
    return rng.choice(OPENINGS).format(intro=intro, scene=rng.choice(SCENE_PHRASES[scene]))


def entrance_sentence(rng: random.Random, p: Placement, others: Sequence[str], returning: bool) -> str:
    templates = RETURNS if returning else ENTRANCES
    if not others:  # nobody to greet: only the templates that do not name anyone else
        templates = tuple(t for t in templates if "{others}" not in t)
    desc = WORLD.character(p.name).description
    return rng.choice(templates).format(
        name=p.name, where=WHERE[p.slot], desc=desc, a_desc=with_article(desc), others=join_names(others)
    )


def farewell_sentence(rng: random.Random, name: str, others: Sequence[str]) -> str:
    templates = FAREWELLS if others else tuple(t for t in FAREWELLS if "{others}" not in t)
    return rng.choice(templates).format(name=name, others=join_names(others))


def alone_sentence(rng: random.Random, name: str) -> str:
    return rng.choice(ALONE).format(name=name)


def travel_sentence(rng: random.Random, names: Sequence[str], scene: SceneName) -> str:
    return rng.choice(TRAVELS).format(names=join_names(names), scene=rng.choice(SCENE_PHRASES[scene]))


def move_sentence(rng: random.Random, p: Placement) -> str:
    return rng.choice(MOVES).format(name=p.name, side=SIDE[p.slot])


def action_sentences(rng: random.Random, placements: Sequence[Placement], scene: SceneName) -> list[str]:
    """One sentence for one character, one for two (naming both), in slot order."""
    if not placements:
        return []
    if len(placements) == 1:
        p = placements[0]
        where = WHERE[p.slot]
        template = rng.choice(ONE_ACTION)
        act = rng.choice(ACTION_PHRASES[p.action])
        return [template.format(name=p.name, act=act, where=where, Where=where.capitalize(), place=SCENE_SHORT[scene])]
    a, b = placements[0], placements[1]
    if a.action == b.action and rng.random() < 0.5:
        return [rng.choice(SAME_ACTION).format(a=a.name, b=b.name, act=rng.choice(ACTION_PHRASES[a.action]))]
    if a.action == b.action:  # two different phrases for the same action, never "X smiled and Y smiled"
        act_a, act_b = rng.sample(ACTION_PHRASES[a.action], 2)
    else:
        act_a, act_b = rng.choice(ACTION_PHRASES[a.action]), rng.choice(ACTION_PHRASES[b.action])
    sentence = rng.choice(TWO_ACTIONS).format(
        a=a.name, b=b.name, where_a=WHERE[a.slot], where_b=WHERE[b.slot], act_a=act_a, act_b=act_b
    )
    return [sentence, *action_sentences(rng, placements[2:], scene)]


def describe_frame(rng: random.Random, truth: FrameTruth) -> str:
    """A picture's caption for caption pre-training: who stands where (slot order) and the scene.

    ``describe_frame(rng, truth)`` -> ``"The sunny meadow: Pip is on the left and Zara the yellow triangle
    stands on the right."``; like the story captions it names every visible character and no one else.
    """
    scene = rng.choice(SCENE_PHRASES[truth.scene])
    fields = {"scene": scene, "Scene": scene[0].upper() + scene[1:], "short": SCENE_SHORT[truth.scene]}
    if not truth.characters:
        return rng.choice(DESCRIBE_EMPTY).format(**fields)
    parts = [
        rng.choice(DESCRIBE_ONE).format(name=p.name, where=WHERE[p.slot], desc=WORLD.character(p.name).description)
        for p in sorted(truth.characters, key=lambda p: SLOTS.index(p.slot))
    ]
    who = join_names(parts)
    return rng.choice(DESCRIBE).format(who=who, Who=who[0].upper() + who[1:], **fields)


@functools.cache
def template_words() -> frozenset[str]:
    """Every word (lower case) the captions can use besides names: the judge's test for a made-up name."""
    texts = [
        *OPENINGS, *ENTRANCES, *RETURNS, *FAREWELLS, *ALONE, *TRAVELS, *MOVES, *ONE_ACTION, *TWO_ACTIONS,
        *SAME_ACTION, *DESCRIBE_ONE, *DESCRIBE, *DESCRIBE_EMPTY,
        *SCENE_SHORT.values(), *WHERE.values(), *SIDE.values(), *HAT_PHRASES.values(),
        *(p for phrases in SCENE_PHRASES.values() for p in phrases),
        *(p for phrases in ACTION_PHRASES.values() for p in phrases),
        *(f"{c.description} named with" for c in WORLD.characters),
    ]  # fmt: skip
    words = {w.lower() for text in texts for w in re.findall(r"[A-Za-z]+", re.sub(r"\{[^}]*\}", " ", text))}
    return frozenset(words)
