"""Run settings of story generation: decoding, the multimodal attention sink, drawing."""

from __future__ import annotations

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


class DrawSettings(StrictModel):
    """De-tokenizer settings (the scripts' values: Euler 50 steps, CFG 7.5, seed 42 for every picture)."""

    num_inference_steps: int = Field(default=50, ge=1)
    guidance_scale: float = Field(default=7.5, ge=1)
    seed: int = 42
    batch_size: int = Field(default=8, ge=1, description="pictures per de-tokenizer call")
    image_size: int | None = Field(default=None, ge=8, description="output side in px; preset default if None")

    @model_validator(mode="after")
    def _check(self) -> DrawSettings:
        if self.image_size is not None and self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {self.image_size}")
        return self
