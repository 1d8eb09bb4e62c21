"""Run settings of story generation: decoding, the multimodal attention sink, drawing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field, model_validator

from seed_story.config import StrictModel

# Stories run up to 25 steps in the paper (trained on 10); the cap only stops a typo from asking for a
# thousand pictures.
MAX_STEPS = 200

StopReason = Literal["steps", "eos_without_image", "max_new_tokens", "texts_exhausted"]


def check_story_texts(text: str, texts: list[str] | None, num_steps: int) -> None:
    """Raise ``ValueError`` saying what to fix unless a story's opening text and step count (or texts) are usable.

    The one check behind both the pipeline's inputs and a manifest's rows.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("opening text is empty (blank): give the first sentence of the story")
    if texts is not None:
        if not texts:
            raise ValueError("texts is an empty list: give at least one text to illustrate, or None to write")
        blank = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if blank:
            raise ValueError(f"texts to illustrate must not be empty (empty at positions {blank})")
        if len(texts) > MAX_STEPS:
            raise ValueError(f"at most {MAX_STEPS} texts can be illustrated, got {len(texts)}")
    elif not 1 <= num_steps <= MAX_STEPS:
        raise ValueError(f"num_steps must be between 1 and {MAX_STEPS}, got {num_steps}")


class InputLimits(StrictModel):
    """What one story may bring, so that no row can take a batch (or a worker's memory) down with it.

    Texts are checked when a manifest row is validated (characters, steps) and when writing starts (tokens);
    pictures when they are read: file size before reading, pixels from the header before decoding.

    Example::

        >>> InputLimits().check_texts("x" * 5000, None, num_steps=25)
        Traceback (most recent call last):
        ValueError: opening text has 5000 characters, over the limit of 4000 (max_text_chars)
    """

    max_text_chars: int = Field(default=4000, ge=1, description="characters of the opening text and of each text")
    max_text_tokens: int = Field(default=1024, ge=1, description="tokenizer tokens of the opening text and each text")
    max_steps: int = Field(default=MAX_STEPS, ge=1, le=MAX_STEPS, description="steps, or texts to illustrate, per row")
    max_picture_bytes: int = Field(default=32 * 2**20, ge=1, description="file size of an opening picture")
    max_picture_pixels: int = Field(default=40_000_000, ge=1, description="width x height of an opening picture")

    def check_texts(self, text: str, texts: list[str] | None, num_steps: int) -> None:
        """Raise ``ValueError`` naming the limit unless a row's texts (characters) and step count fit."""
        if num_steps > self.max_steps:
            what = "texts to illustrate" if texts is not None else "steps"
            raise ValueError(f"{num_steps} {what}, over the limit of {self.max_steps} (max_steps)")
        self._check_chars(text, texts)

    def check_tokens(self, text: str, texts: list[str] | None, encode: Callable[[str], list[int]]) -> None:
        """Raise ``ValueError`` unless each text fits in ``max_text_tokens`` of ``encode`` (the writer's tokenizer)."""
        self._check_chars(text, texts)  # never tokenize a megabyte
        for what, t in _named_texts(text, texts):
            n = len(encode(t))
            if n > self.max_text_tokens:
                raise ValueError(f"{what} has {n} tokens, over the limit of {self.max_text_tokens} (max_text_tokens)")

    def _check_chars(self, text: str, texts: list[str] | None) -> None:
        for what, t in _named_texts(text, texts):
            if len(t) > self.max_text_chars:
                raise ValueError(f"{what} has {len(t)} characters, over the limit of {self.max_text_chars} "
                                 "(max_text_chars)")  # fmt: skip

    def check_picture_bytes(self, size: int) -> None:
        if size > self.max_picture_bytes:
            raise ValueError(f"opening image has {size:,} bytes, over the limit of {self.max_picture_bytes:,} "
                             "(max_picture_bytes)")  # fmt: skip

    def check_picture_pixels(self, width: int, height: int) -> None:
        if width * height > self.max_picture_pixels:
            raise ValueError(f"opening image is {width}x{height} ({width * height:,} pixels), over the limit of "
                             f"{self.max_picture_pixels:,} (max_picture_pixels)")  # fmt: skip


def _named_texts(text: str, texts: list[str] | None) -> list[tuple[str, str]]:
    return [("opening text", text), *((f"text {i + 1}", t) for i, t in enumerate(texts or []))]


class SamplingSettings(StrictModel):
    """How the next token is chosen. Greedy by default, as in the released generation scripts."""

    do_sample: bool = False
    temperature: float = Field(default=0.7, gt=0)
    top_p: float = Field(default=0.5, gt=0, le=1)
    max_new_tokens: int = Field(default=500, gt=0, description="per story step, image tokens included")


class SinkSettings(StrictModel):
    """Multimodal attention sink: what stays in the KV cache once a story outgrows its window.

    The window holds the last ``window_images`` whole steps (text + picture). When an older step is evicted
    its tokens leave the cache except ``start_tokens`` (the story's first tokens, kept once), and, around its
    picture, ``head_context`` tokens before ``<img>``, ``head_tokens`` from ``<img>`` on, and the last
    ``tail_tokens`` up to and including ``</img>``. Head/tail pieces of at most ``max_sink_images`` evicted
    pictures are kept (the opening picture's always, then the most recent), so the cache stays bounded however
    long the story. Kept tokens are re-positioned contiguously (RoPE keys are rotated to their new positions),
    so positions never exceed the cache size. ``enabled=False`` gives a plain sliding window of whole steps.
    """

    enabled: bool = True
    window_images: int = Field(default=8, ge=1)
    start_tokens: int = Field(default=4, ge=0)
    head_context: int = Field(default=4, ge=0)
    head_tokens: int = Field(default=8, ge=0)
    tail_tokens: int = Field(default=9, ge=0)
    max_sink_images: int = Field(default=2, ge=1)

    @property
    def tokens_per_image(self) -> int:
        return self.head_context + self.head_tokens + self.tail_tokens

    def sink_bound(self) -> int:
        """Most tokens the sink region can hold."""
        if not self.enabled:
            return 0
        return self.start_tokens + self.max_sink_images * self.tokens_per_image


class WriterSettings(StrictModel):
    """Settings of the MLLM half (writing text and regressing picture features)."""

    sampling: SamplingSettings = SamplingSettings()
    sink: SinkSettings = SinkSettings()
    inst_separator: bool = Field(
        default=True,
        description="illustrate mode: put '[INST]' before each given text, as in training "
        "(the released vis script used none)",
    )

    def kv_bound(self, image_tokens: int, max_text_tokens: int) -> int:
        """Upper bound on the valid tokens one story keeps in the KV cache at any time.

        ``max_text_tokens`` bounds one step's text (the opening caption included). The bound is the sink, a
        full window of steps, and the step being decoded.
        """
        step = max_text_tokens + image_tokens + 2
        decoding = self.sampling.max_new_tokens + 1
        return 1 + self.sink.sink_bound() + self.sink.window_images * step + step + decoding


Sampler = Literal["euler", "dpm++2m", "unipc"]

# Named (sampler, denoising steps) for drawing. "reference" is the release's; "fast" is DPM-Solver++ 2M at 20 steps,
# where diffusers' documentation puts it for SDXL-class UNets. On SEED-Story-Mini the judge finds it as good as
# Euler from 12 steps on (bench/samplers.py); for the released model it stays a choice, not the default, until a
# GPU run with the released weights checks it with StoryPipeline.draw_fidelity.
DRAW_PRESETS: dict[str, tuple[Sampler, int]] = {"reference": ("euler", 50), "fast": ("dpm++2m", 20)}


class DrawSettings(StrictModel):
    """De-tokenizer settings (the scripts' values: Euler 50 steps, CFG 7.5, seed 42 for every picture)."""

    sampler: Sampler = Field(
        default=DRAW_PRESETS["reference"][0], description="euler (the reference's), dpm++2m (DPM-Solver++ 2M) or unipc"
    )
    num_inference_steps: int = Field(default=DRAW_PRESETS["reference"][1], ge=1)
    guidance_scale: float = Field(default=7.5, ge=1)
    seed: int = 42
    batch_size: int = Field(default=8, ge=1, description="pictures per de-tokenizer call")
    image_size: int | None = Field(default=None, ge=8, description="output side in px; preset default if None")

    @model_validator(mode="after")
    def _check(self) -> DrawSettings:
        if self.image_size is not None and self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {self.image_size}")
        return self
