"""Consistency metrics of one story-world story, from its captions and what the judge reads in its pictures.

A story is frames ``t = 0..T-1``, each a caption and a picture. For frame ``t`` let ``N_t`` be the cast names
the caption mentions, ``E_t`` those of them in a sentence with an entrance word, and ``D_t`` the characters
the detector finds in the picture (``captions.parse_caption`` and ``detect.detect_frame``). Every metric is a
``Ratio`` (hits / total; its value is ``None`` when total is 0, e.g. no introductions in a story), so
stories pool into run totals by adding hits and totals (a micro average).

* ``character_consistency``: named characters drawn as themselves. Over pairs ``(c, t)`` with ``c`` in
  ``N_t``, the fraction with ``c`` in ``D_t``. Every character has one fixed look, so this is "a named
  character looks the same in every frame where the text puts them".
* ``appearance_stability``: the same, without trusting the canonical look. Take the frames where the caption
  names exactly one character ``c`` and the picture shows exactly one character ``d_t`` (whoever it looks
  like); over all pairs of such frames of the same ``c``, the fraction with ``d_t == d_u``.
* ``style_consistency``: over frames, the fraction whose detected style is the story's most frequent one.
* ``character_precision``: over pairs ``(c, t)`` with ``c`` in ``D_t``, the fraction with ``c`` in ``N_t``
  (nobody is drawn whom the text does not mention). Recall is ``character_consistency``.
* ``cast_accuracy``: over frames, the fraction with ``D_t == N_t`` exactly.
* ``scene_accuracy``: the text's scene at ``t`` is the last scene named in captions ``0..t``. Over frames
  where it is known, the fraction whose detected scene equals it.
* ``entrance_coherence``: over introductions, i.e. pairs ``(c, t)`` with ``t >= 1``, ``c`` in ``N_t`` and
  not in ``N_{t-1}``, the fraction with ``c`` in ``E_t`` (no one appears out of nowhere). Frame 0 introduces
  its characters by definition.
* ``name_stability``: over capitalised words that are cast names or made-up names (capitalised words that
  are neither cast names nor words of the world's templates), the fraction that are cast names.
* ``text_coherence``: the mean of the two above (a missing one counts as 1).
* ``text_image_agreement``: the mean of ``character_consistency``, ``character_precision`` and
  ``scene_accuracy`` (a missing one counts as 1).

Example::

    scores = score_story([(caption, detect_frame(image)) for caption, image in frames], story_id="s1")
    scores.character_consistency.value
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from PIL import Image
from pydantic import Field, computed_field

from seed_story.config import StrictModel
from seed_story.storyworld.judge.captions import CaptionMentions, parse_caption
from seed_story.storyworld.judge.detect import FrameDetection, detect_frame

METRICS = (
    "character_consistency",
    "appearance_stability",
    "style_consistency",
    "character_precision",
    "cast_accuracy",
    "scene_accuracy",
    "entrance_coherence",
    "name_stability",
)


class Ratio(StrictModel):
    """``hits`` out of ``total``; ``value`` is ``None`` when there was nothing to count."""

    hits: int = Field(default=0, ge=0)
    total: int = Field(default=0, ge=0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    def __add__(self, other: Ratio) -> Ratio:
        return Ratio(hits=self.hits + other.hits, total=self.total + other.total)


def _mean_or_one(*values: float | None) -> float:
    return sum(1.0 if v is None else v for v in values) / len(values)


class Scores(StrictModel):
    """The metrics of one story or of a whole run (see the module docstring for each definition)."""

    frames: int = 0
    character_consistency: Ratio = Ratio()
    appearance_stability: Ratio = Ratio()
    style_consistency: Ratio = Ratio()
    character_precision: Ratio = Ratio()
    cast_accuracy: Ratio = Ratio()
    scene_accuracy: Ratio = Ratio()
    entrance_coherence: Ratio = Ratio()
    name_stability: Ratio = Ratio()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text_coherence(self) -> float:
        return _mean_or_one(self.entrance_coherence.value, self.name_stability.value)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text_image_agreement(self) -> float:
        values = (self.character_consistency.value, self.character_precision.value, self.scene_accuracy.value)
        return _mean_or_one(*values)

    def __add__(self, other: Scores) -> Scores:
        pooled = {m: getattr(self, m) + getattr(other, m) for m in METRICS}
        return Scores(frames=self.frames + other.frames, **pooled)


def _appearance_stability(mentions: Sequence[CaptionMentions], found: Sequence[FrameDetection]) -> Ratio:
    looks: dict[str, list[str]] = defaultdict(list)
    for m, d in zip(mentions, found, strict=True):
        if len(m.names) == 1 and len(d.characters) == 1:
            looks[m.names[0]].extend(d.characters)
    hits = total = 0
    for seen in looks.values():
        n = len(seen)
        total += n * (n - 1) // 2
        hits += sum(k * (k - 1) // 2 for k in Counter(seen).values())  # pairs that agree
    return Ratio(hits=hits, total=total)


def _scene_accuracy(mentions: Sequence[CaptionMentions], found: Sequence[FrameDetection]) -> Ratio:
    hits = total = 0
    text_scene = None
    for m, d in zip(mentions, found, strict=True):
        text_scene = m.scene or text_scene
        if text_scene is not None:
            total += 1
            hits += d.scene == text_scene
    return Ratio(hits=hits, total=total)


def _entrance_coherence(mentions: Sequence[CaptionMentions]) -> Ratio:
    hits = total = 0
    for before, now in itertools.pairwise(mentions):
        for name in set(now.names) - set(before.names):
            total += 1
            hits += name in now.entrances
    return Ratio(hits=hits, total=total)


def score_story(frames: Sequence[tuple[str, FrameDetection]]) -> Scores:
    """The metrics of one story from ``(caption, detection)`` per frame, in story order.

    Example::

        score_story([("Pip jumped by the lake.", detect_frame(image))]).cast_accuracy.value
    """
    mentions = [parse_caption(caption) for caption, _ in frames]
    found = [d for _, d in frames]
    named = [(set(m.names), d.characters) for m, d in zip(mentions, found, strict=True)]
    styles = Counter(d.style for d in found)
    majority = styles.most_common(1)[0][1] if styles else 0
    unknown = sum(len(m.unknown_names) for m in mentions)
    tokens = sum(m.name_tokens for m in mentions)
    return Scores(
        frames=len(frames),
        character_consistency=Ratio(hits=sum(len(n & d) for n, d in named), total=sum(len(n) for n, _ in named)),
        appearance_stability=_appearance_stability(mentions, found),
        style_consistency=Ratio(hits=majority, total=len(found)),
        character_precision=Ratio(hits=sum(len(n & d) for n, d in named), total=sum(len(d) for _, d in named)),
        cast_accuracy=Ratio(hits=sum(n == d for n, d in named), total=len(named)),
        scene_accuracy=_scene_accuracy(mentions, found),
        entrance_coherence=_entrance_coherence(mentions),
        name_stability=Ratio(hits=tokens, total=tokens + unknown),
    )


def judge_story(frames: Iterable[tuple[str, Image.Image]]) -> Scores:
    """Detect every picture, then ``score_story``.

    Example::

        judge_story(zip(captions, images)).text_coherence
    """
    return score_story([(caption, detect_frame(image)) for caption, image in frames])
