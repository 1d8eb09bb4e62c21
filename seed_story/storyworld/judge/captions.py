"""Read a caption the way the judge needs it: who is named, which scene, who makes an entrance.

Matching is by whole words. A name is one of the world's cast names (case-sensitive, so "pip" is not Pip);
a scene is named by a keyword (``SCENE_WORDS``); when a caption names several scenes the last one counts,
because captions name where the characters end up last ("... went all the way to the lake").

Example::

    m = parse_caption("Just then, Momo arrived on the right. Pip slept by the lake.")
    m.names, m.scene, m.entrances  # ("Momo", "Pip"), "lake", ("Momo",)
"""

from __future__ import annotations

import functools
import re

from pydantic import Field

from seed_story.config import StrictModel
from seed_story.storyworld.spec import WORLD, SceneName
from seed_story.storyworld.text import ENTRANCE_WORDS, template_words

SCENE_WORDS: dict[SceneName, tuple[str, ...]] = {
    "meadow": ("meadow", "meadows", "field"),
    "lake": ("lake", "lakes", "pond"),
    "desert": ("desert", "deserts", "dunes"),
    "night_forest": ("forest", "forests", "woods"),
    "snow": ("snow", "snowy", "snowfield"),
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]+\b")


class CaptionMentions(StrictModel):
    """What one caption says, as far as the judge is concerned."""

    names: tuple[str, ...] = Field(description="cast names, in order of first mention, each once")
    scene: SceneName | None = Field(description="the last scene named, if any")
    entrances: tuple[str, ...] = Field(description="names in a sentence that holds an entrance word")
    unknown_names: tuple[str, ...] = Field(description="capitalised words that are neither names nor world words")
    name_tokens: int = Field(ge=0, description="how many times cast names occur, repeats included")


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], dict[str, SceneName]]:
    names = re.compile(r"\b(" + "|".join(map(re.escape, WORLD.names)) + r")\b")
    scene_of = {word: scene for scene, words in SCENE_WORDS.items() for word in words}
    scenes = re.compile(r"\b(" + "|".join(scene_of) + r")\b", re.IGNORECASE)
    entrance = re.compile(r"\b(" + "|".join(ENTRANCE_WORDS) + r")\b", re.IGNORECASE)
    return names, scenes, entrance, scene_of


def parse_caption(caption: str) -> CaptionMentions:
    """Names, scene, entrances and made-up names in ``caption`` (see the module docstring).

    Example::

        parse_caption("Pip and Bobo went to the snowy hills.").unknown_names  # ("Bobo",)
    """
    names_re, scenes_re, entrance_re, scene_of = _patterns()
    found = names_re.findall(caption)
    scenes = [scene_of[w.lower()] for w in scenes_re.findall(caption)]
    entrances: list[str] = []
    for sentence in _SENTENCE_END.split(caption):
        if entrance_re.search(sentence):
            entrances.extend(names_re.findall(sentence))
    known = template_words() | {w for words in SCENE_WORDS.values() for w in words}
    unknown = [w for w in _CAPITALISED.findall(caption) if w not in WORLD.names and w.lower() not in known]
    return CaptionMentions(
        names=tuple(dict.fromkeys(found)),
        scene=scenes[-1] if scenes else None,
        entrances=tuple(dict.fromkeys(entrances)),
        unknown_names=tuple(unknown),
        name_tokens=len(found),
    )


def is_world_caption(caption: str) -> bool:
    """Whether ``caption`` reads as the story world writes: it names a cast member and a scene, and no one else.

    Every story-world opening does; a prompt from elsewhere ("The blue frog runs to the barn.") does not.
    """
    mentions = parse_caption(caption)
    return bool(mentions.names) and mentions.scene is not None and not mentions.unknown_names
