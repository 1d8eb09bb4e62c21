"""``StoryPipeline``: opening picture + text in, illustrated story out.

Two separable halves: :meth:`StoryPipeline.write_story` runs only the MLLM (text + regressed features per
step; the drawn pictures are never fed back, the release's gen_george.py) and :meth:`StoryPipeline.draw` runs only the
de-tokenizer on any batch of feature sets. ``__call__``/:meth:`generate` interleave them step by step,
drawing every story's picture of a step in one batch; the result is identical to writing first and
drawing later.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageFile

from seed_story.components import Components, load_components
from seed_story.generation.drawer import ImageDrawer
from seed_story.generation.records import StoryOutput, StoryRequest, StoryStep, WrittenStep, WrittenStory
from seed_story.generation.settings import DrawSettings, InputLimits, WriterSettings, check_story_texts
from seed_story.generation.writer import StoryWriter
from seed_story.models.visual_tokenizer import image_transform_batch

ImageInput = Image.Image | str | Path | bytes


@dataclass
class StoryInput:
    """What a user gives: an opening picture and text, and either a length (write) or texts (illustrate)."""

    image: ImageInput
    text: str
    num_steps: int = 25
    texts: list[str] | None = None
    seed: int = 0


def load_image(image: ImageInput, limits: InputLimits | None = None) -> Image.Image:
    """Open a picture from a PIL image, a path or encoded bytes; ``ValueError`` says why it cannot be used.

    A file over ``limits`` (default :class:`InputLimits`) in bytes or in pixels, as its header declares them, is
    refused before anything is decoded, so no picture can make a worker allocate more than the limits allow.
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    limits = limits or InputLimits()
    if isinstance(image, bytes):
        limits.check_picture_bytes(len(image))
        source: io.BytesIO | Path = io.BytesIO(image)
    else:
        source = Path(image)
        if not source.is_file():
            raise ValueError(f"opening image not found: {source}")
        limits.check_picture_bytes(source.stat().st_size)
    with _strict_decoding():
        try:
            opened = Image.open(source)  # reads the header only
        except Exception as err:  # PIL raises several types for a file that is not a picture
            raise ValueError(f"opening image cannot be read as a picture: {err}") from err
        with opened:
            limits.check_picture_pixels(*opened.size)
            try:
                opened.load()
                return opened.convert("RGB")
            except Exception as err:  # truncated or corrupt data: OSError, SyntaxError, zlib.error, ...
                raise ValueError(f"opening image cannot be read as a picture: {err}") from err


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """PIL's process-wide settings while an untrusted picture is opened, restored afterwards: a truncated file is
    an error even where another library turned tolerance on (weasyprint does, at import), and the pixel limit
    alone decides on size (PIL's own bomb check would refuse some pictures before their size can be read)."""
    truncated, bomb = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = False, None
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = truncated, bomb


class StoryPipeline:
    """SEED-Story generation, built once and called many times.

    Example::

        pipe = StoryPipeline.from_pretrained("pretrained", device="cuda", dtype=torch.float16)
        story = pipe("opening.jpg", "George wakes up early.", num_steps=25)
        story.steps[0].image.save("page1.png"); story.steps[0].text
    """

    def __init__(
        self,
        components: Components,
        writer_settings: WriterSettings | None = None,
        draw_settings: DrawSettings | None = None,
    ) -> None:
        self.components = components
        self.config = components.config
        self.writer = StoryWriter(components.mllm, components.tokenizer, writer_settings)
        self.draw_settings = draw_settings or DrawSettings()
        self.drawer = ImageDrawer(
            components.detokenizer,
            components.vae,
            components.scheduler,
            image_size=self.draw_settings.image_size or self.config.detokenizer.image_size,
        )
        self._negative: torch.Tensor | None = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        writer_settings: WriterSettings | None = None,
        draw_settings: DrawSettings | None = None,
    ) -> StoryPipeline:
        """Load a released ``pretrained/`` folder or a checkpoint of this project."""
        return cls(load_components(path, dtype=dtype).to(device), writer_settings, draw_settings)

    @property
    def device(self) -> torch.device:
        return self.components.mllm.lm_head.weight.device

    # -- 1. inputs -------------------------------------------------------------------------------------
    def check_inputs(self, story: StoryInput) -> Image.Image:
        """Validate one story's input; returns its opening picture. Raises ``ValueError`` with the fix."""
        check_story_texts(story.text, story.texts, story.num_steps)
        return load_image(story.image)

    # -- 2. encode -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """ViT features (N, T, D) of opening pictures."""
        vit = self.components.visual_tokenizer
        pixels = image_transform_batch(list(images), vit.cfg.image_size)
        return vit(pixels).float().cpu()

    @property
    def negative_features(self) -> torch.Tensor:
        """The CFG negative (ViT features of a zero image), computed once per pipeline."""
        if self._negative is None:
            self._negative = self.components.visual_tokenizer.negative_features()
        return self._negative

    def requests(self, stories: Sequence[StoryInput]) -> tuple[list[StoryRequest], list[Image.Image]]:
        images = [self.check_inputs(s) for s in stories]
        features = self.encode_images(images)
        requests = [
            StoryRequest(
                opening_text=s.text,
                opening_features=f,
                num_steps=len(s.texts) if s.texts is not None else s.num_steps,
                texts=list(s.texts) if s.texts is not None else None,
                seed=s.seed,
            )
            for s, f in zip(stories, features, strict=True)
        ]
        return requests, images

    # -- 3. the two halves ------------------------------------------------------------------------------
    def write_story(
        self,
        requests: Sequence[StoryRequest],
        on_step: Callable[[int, WrittenStep], None] | None = None,
    ) -> list[WrittenStory]:
        """The MLLM half: text + regressed features of every step of every story, no pictures drawn."""
        return self.writer.write(requests, on_step=on_step)

    def draw(self, features: Sequence[torch.Tensor] | torch.Tensor) -> list[Image.Image]:
        """The de-tokenizer half: one picture per feature set (T, D), in batches of ``draw_settings.batch_size``."""
        stacked = torch.stack(list(features)) if not isinstance(features, torch.Tensor) else features
        s = self.draw_settings
        pictures: list[Image.Image] = []
        for start in range(0, stacked.shape[0], s.batch_size):
            pictures += self.drawer.draw(
                stacked[start : start + s.batch_size],
                self.negative_features,
                num_inference_steps=s.num_inference_steps,
                guidance_scale=s.guidance_scale,
                seed=s.seed,
                sampler=s.sampler,
            )
        return pictures

    @torch.no_grad()
    def draw_fidelity(self, features: Sequence[torch.Tensor], pictures: Sequence[Image.Image]) -> list[float]:
        """How well each picture carries the features it was drawn from: the cosine similarity, averaged over
        tokens, between the ViT features of the drawn picture and those features. A sampler or step count that
        draws worse pictures loses it; it needs no ground truth, so it works at the released size."""
        seen = self.encode_images(list(pictures))
        wanted = torch.stack([f.float().cpu() for f in features])
        return torch.nn.functional.cosine_similarity(seen, wanted, dim=-1).mean(dim=-1).tolist()

    # -- 4. both, interleaved ---------------------------------------------------------------------------
    def generate(
        self,
        stories: Sequence[StoryInput],
        on_step: Callable[[int, StoryStep], None] | None = None,
    ) -> list[StoryOutput]:
        """Write and draw B stories at once; ``on_step(story_index, step)`` fires as each page is ready."""
        requests, openings = self.requests(stories)
        session = self.writer.session(requests)
        steps: list[list[StoryStep]] = [[] for _ in stories]
        while not session.done:
            written = session.step()
            if not written:
                continue
            start = time.perf_counter()
            pictures = self.draw([step.features for _, step in written])
            draw_seconds = (time.perf_counter() - start) / len(written)
            for (story, step), picture in zip(written, pictures, strict=True):
                page = StoryStep(
                    index=step.index,
                    text=step.text,
                    image=picture,
                    features=step.features,
                    token_ids=step.token_ids,
                    prompt_tokens=step.prompt_tokens,
                    kv_tokens=step.kv_tokens,
                    write_seconds=step.seconds,
                    draw_seconds=draw_seconds,
                )
                steps[story].append(page)
                if on_step is not None:
                    on_step(story, page)
        return [
            StoryOutput(
                opening_text=r.opening_text,
                opening_image=img,
                steps=pages,
                stop_reason=written.stop_reason,
                peak_kv_tokens=written.peak_kv_tokens,
            )
            for r, img, pages, written in zip(requests, openings, steps, session.stories, strict=True)
        ]

    def __call__(
        self,
        image: ImageInput,
        text: str,
        *,
        num_steps: int = 25,
        texts: list[str] | None = None,
        seed: int = 0,
        on_step: Callable[[int, StoryStep], None] | None = None,
    ) -> StoryOutput:
        """One story: ``texts=None`` writes ``num_steps`` steps; a list of texts illustrates each of them."""
        [story] = self.generate([StoryInput(image, text, num_steps, texts, seed)], on_step=on_step)
        return story
