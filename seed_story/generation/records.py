"""Typed inputs and outputs of story generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from PIL import Image

from seed_story.generation.settings import StopReason


@dataclass
class ResumeStep:
    """A step written before (e.g. by a run that crashed), replayed into the cache instead of decoded again.

    ``generator_state`` is the sampling generator's state after the step (``torch.Generator.get_state()``),
    so a sampled story resumes on the same random stream; ``None`` when decoding is greedy.
    """

    text: str
    features: torch.Tensor  # (T, D) regressed features of the step's picture
    generator_state: torch.Tensor | None = None
    token_ids: list[int] | None = None  # ids generated for the step; None: its text re-tokenises to them


@dataclass
class StoryRequest:
    """One story to write (``texts is None``) or to illustrate (``texts`` given: one picture per text).

    ``opening_features`` are the ViT features (T, D) of the opening picture; :class:`StoryPipeline` computes
    them from an image. ``seed`` drives sampling (ignored when greedy). ``resume`` holds the first steps when
    they were written before: they are fed as context (one forward each, no decoding) and writing goes on
    from step ``len(resume) + 1``; ``num_steps`` still counts the whole story.
    """

    opening_text: str
    opening_features: torch.Tensor
    num_steps: int = 25
    texts: list[str] | None = None
    seed: int = 0
    resume: list[ResumeStep] = field(default_factory=list)

    @property
    def mode(self) -> Literal["write", "illustrate"]:
        return "write" if self.texts is None else "illustrate"


@dataclass
class WrittenStep:
    """One step of the MLLM half: text and the regressed picture features (what the de-tokenizer draws)."""

    index: int  # 1-based: step 0 is the opening picture and text
    text: str
    features: torch.Tensor  # (T, D) in ViT feature space, on the CPU
    token_ids: list[int]  # generated ids of this step (forced image tokens included)
    prompt_tokens: int  # tokens prefilled into the cache for this step
    kv_tokens: int  # real tokens in this story's cache when the step was decoded
    seconds: float  # wall time of the batched forward passes of this step (shared by the batch)
    generator_state: torch.Tensor | None = None  # sampling generator state after this step (for resume)


@dataclass
class WrittenStory:
    steps: list[WrittenStep] = field(default_factory=list)
    stop_reason: StopReason = "steps"
    peak_kv_tokens: int = 0


@dataclass
class StoryStep:
    """A finished step: the written step plus its picture."""

    index: int
    text: str
    image: Image.Image
    features: torch.Tensor
    token_ids: list[int]
    prompt_tokens: int
    kv_tokens: int
    write_seconds: float
    draw_seconds: float


@dataclass
class StoryOutput:
    """A whole story, as diffusers pipelines return theirs: ``output.steps[i].image``."""

    opening_text: str
    opening_image: Image.Image | None
    steps: list[StoryStep]
    stop_reason: StopReason
    peak_kv_tokens: int

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.steps]

    @property
    def images(self) -> list[Image.Image]:
        return [s.image for s in self.steps]
