"""One training sequence from a story chunk, exactly as the release's ``decode_long_story_data``.

From a chunk of n captions and pictures: a length k uniform in 2..n; caption i followed by picture i;
pictures 0..k-2 are context, picture k-1 the target. The ids are ``[BOS] + enc(instruction) + enc(response) +
[EOS]`` with two separate encode calls; only the response is supervised, except the target's image tokens and
``</img>`` (so ``<img>`` and EOS are learnt). A sequence of ``max_length`` tokens or more is dropped, never cut.

A one-picture chunk (an image-caption pair, ingested with ``--chunk-length 1``) is a caption pre-training sample
instead (:func:`build_caption_sample`): caption -> picture (the picture regressed) or picture -> caption (the
caption supervised), the two tasks of SEED-X's pre-training on captioned images.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from transformers import PreTrainedTokenizerBase

from seed_story.config import StrictModel
from seed_story.data.mllm_batch import MLLMBatch
from seed_story.interleave import image_slot_mask
from seed_story.models.visual_tokenizer import image_transform_batch
from seed_story.tokenizer import INST, ImageTokenIds, image_string

IGNORE_INDEX = -100


class SequenceSettings(StrictModel):
    """How chunks become sequences; the defaults are the stage-2 reference's (``george_sft.yaml``)."""

    max_length: int = Field(default=1280, gt=0, description="sequences this long or longer are dropped")
    pad_to_max_length: bool = Field(default=True, description="pad every batch to max_length, else to its longest")
    num_image_tokens: int = Field(default=64, gt=0)
    image_size: int = Field(default=448, gt=0)
    keep_ratio: bool = Field(default=False, description="resize + centre-crop instead of squashing (stage 3)")
    sd_size: int | None = Field(default=None, gt=0, description="also give the target's SD pixels (stages 1/3)")
    swap_crop_offsets: bool = Field(
        default=True, description="reference quirk: time_ids carry the horizontal crop offset in the 'top' slot"
    )
    min_resolution: int = Field(default=128, ge=0, description="reject if the last picture has a shorter side")
    min_aspect_ratio: float = Field(default=0.2, gt=0, le=1, description="reject width/height outside [r, 1/r]")
    caption_generation: float = Field(
        default=0.5, ge=0, le=1, description="share of image-caption pairs trained caption -> picture, not back"
    )


@dataclass
class Sample:
    """One unpadded sequence: (L,) ids/labels/masks, (k,) picture masks, (k, 3, S, S) pictures."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    ids_cmp_mask: torch.Tensor
    ids_gen_mask: torch.Tensor
    embeds_cmp_mask: torch.Tensor
    embeds_gen_mask: torch.Tensor
    images: torch.Tensor
    text: str
    meta: dict[str, int | str] = field(default_factory=dict)
    sd_image: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None


@dataclass
class TrainBatch:
    """A right-padded batch (the release's ContinuousLVLM.forward): (B, L) ``input_ids`` int64, ``attention_mask``
    int64, ``labels`` int64, ``ids_cmp_mask``/``ids_gen_mask`` bool; (N,) ``embeds_cmp_mask``/``embeds_gen_mask`` bool
    and (N, 3, S, S) float32 ``images`` over all N pictures of the batch, sample-major; ``texts`` and ``meta`` per
    sample. With ``SequenceSettings.sd_size`` set, (B, 3, sd, sd) ``sd_images`` of each sample's target in [-1, 1] and
    (B, 6) float32 ``time_ids``; otherwise both are ``None``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    ids_cmp_mask: torch.Tensor
    ids_gen_mask: torch.Tensor
    embeds_cmp_mask: torch.Tensor
    embeds_gen_mask: torch.Tensor
    images: torch.Tensor
    texts: list[str]
    meta: list[dict[str, int | str]]
    sd_images: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    @property
    def target_images(self) -> torch.Tensor:
        """(B, 3, S, S) ViT pixels of each sample's target picture (the one ``embeds_gen_mask`` marks)."""
        return self.images[self.embeds_gen_mask]

    def with_embeds(self, image_embeds: torch.Tensor) -> MLLMBatch:
        """The MLLM's batch, once the frozen ViT has turned ``images`` into (N, tokens, dim) features."""
        if image_embeds.shape[0] != self.images.shape[0]:
            raise ValueError(f"need features for {self.images.shape[0]} pictures, got {image_embeds.shape[0]}")
        return MLLMBatch.from_fields(self, image_embeds)


def passes_filter(image: Image.Image, settings: SequenceSettings) -> bool:
    """The reference's size check (the release's decode_long_story_data, step 2): both sides >= ``min_resolution`` and
    width/height in [``min_aspect_ratio``, 1 / ``min_aspect_ratio``]. Only the header is read, not the pixels."""
    w, h = image.size
    if min(w, h) < settings.min_resolution or min(w, h) == 0:
        return False
    return settings.min_aspect_ratio <= w / h <= 1 / settings.min_aspect_ratio


def sd_transform(image: Image.Image, size: int, swap_crop_offsets: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, size, size) SD pixels in [-1, 1] and (6,) ``time_ids`` of a picture (the release's decode_long_story_data,
    step 3; the release's image transforms).

    Shorter side to ``size`` (bicubic, longer side truncated), centre crop, ``(x - 0.5) / 0.5``. ``time_ids`` =
    [H, W, top, left, size, size] with the original H, W. The reference unpacks the resized (h, w) as (w, h), so
    its offsets are swapped; ``swap_crop_offsets=True`` reproduces that (what its checkpoints were trained on).

    Example::

        pixels, time_ids = sd_transform(Image.new("RGB", (1920, 1080)), 1024)
        time_ids.tolist()  # [1080.0, 1920.0, 398.0, 0.0, 1024.0, 1024.0]
    """
    image = image.convert("RGB")
    w, h = image.size
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top, left = round((new_h - size) / 2), round((new_w - size) / 2)
    image = image.crop((left, top, left + size, top + size))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    if swap_crop_offsets:
        top, left = left, top
    time_ids = torch.tensor([h, w, top, left, size, size], dtype=torch.float32)
    return (pixels - 0.5) / 0.5, time_ids


def sample_length(rng: random.Random, num_images: int) -> int:
    """k = ``randint(0, n - 2) + 2``: the number of pictures used, uniform in 2..n (the release's
    decode_long_story_data, step 1)."""
    if num_images < 2:
        raise ValueError(f"a story needs at least 2 pictures, got {num_images}")
    return rng.randint(0, num_images - 2) + 2


def story_texts(captions: Sequence[str], num_image_tokens: int) -> tuple[str, str]:
    """(instruction, response) of captions 0..k-1: ``[INST]`` before every caption but the first."""
    img = image_string(num_image_tokens)
    instruction = captions[0] + img + "".join(INST + c + img for c in captions[1:-1])
    return instruction, INST + captions[-1] + img


def build_tokens(
    tokenizer: PreTrainedTokenizerBase,
    image_ids: ImageTokenIds,
    captions: Sequence[str],
    *,
    supervise_all: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """ids, labels, context-slot mask, target-slot mask and text of a story whose last picture is the target.

    ``supervise_all`` also supervises the instruction (every earlier caption, ``<img>`` and ``[INST]``; never BOS):
    not the reference, but the toy model (``seed_story.training.toy``) learns its world in seconds with it.
    """
    instruction, response = story_texts(captions, len(image_ids.image))
    prefix = [tokenizer.bos_token_id, *tokenizer.encode(instruction, add_special_tokens=False)]
    target = [*tokenizer.encode(response, add_special_tokens=False), tokenizer.eos_token_id]
    ids = torch.tensor([*prefix, *target], dtype=torch.long)
    slots = image_slot_mask(ids, image_ids)
    in_response = torch.arange(len(ids)) >= len(prefix)
    labels = ids.clone()
    labels[: 1 if supervise_all else len(prefix)] = IGNORE_INDEX
    labels[slots | (ids == image_ids.eoi)] = IGNORE_INDEX
    return ids, labels, slots & ~in_response, slots & in_response, instruction + response


def _check_image_tokens(image_ids: ImageTokenIds, settings: SequenceSettings) -> None:
    if len(image_ids.image) != settings.num_image_tokens:
        raise ValueError(f"tokenizer has {len(image_ids.image)} image tokens, settings say {settings.num_image_tokens}")


def build_sequence(
    tokenizer: PreTrainedTokenizerBase,
    image_ids: ImageTokenIds,
    captions: Sequence[str],
    images: Sequence[Image.Image],
    rng: random.Random | None,
    settings: SequenceSettings | None = None,
    *,
    length: int | None = None,
) -> Sample | None:
    """A training sample from the first k (random, 2..n) captions and pictures; ``None`` if too long.

    k is drawn from ``rng`` unless ``length`` gives it (already drawn with :func:`sample_length`, e.g. to
    decode only the pictures used). ``images`` may hold only the first k pictures.

    Example::

        sample = build_sequence(tok, ImageTokenIds.from_tokenizer(tok, 64), captions, pictures, random.Random(0))
        sample.input_ids.shape, sample.images.shape  # (L,), (k, 3, 448, 448)
    """
    settings = settings or SequenceSettings()
    _check_image_tokens(image_ids, settings)
    if length is None:
        if rng is None:
            raise ValueError("build_sequence needs an rng or a length")
        length = sample_length(rng, len(captions))
    k = length
    if not 2 <= k <= len(captions):
        raise ValueError(f"length must be in 2..{len(captions)}, got {k}")
    if len(images) < k:
        raise ValueError(f"need at least {k} pictures, got {len(images)}")
    ids, labels, cmp, gen, text = build_tokens(tokenizer, image_ids, captions[:k])
    if len(ids) >= settings.max_length:
        return None
    is_target = torch.arange(k) == k - 1
    sd_image, time_ids = (None, None)
    if settings.sd_size is not None:
        sd_image, time_ids = sd_transform(images[k - 1], settings.sd_size, settings.swap_crop_offsets)
    return Sample(
        input_ids=ids,
        labels=labels,
        ids_cmp_mask=cmp,
        ids_gen_mask=gen,
        embeds_cmp_mask=~is_target,
        embeds_gen_mask=is_target,
        images=image_transform_batch(
            [im.convert("RGB") for im in images[:k]], settings.image_size, settings.keep_ratio
        ),
        text=text,
        sd_image=sd_image,
        time_ids=time_ids,
    )


def build_caption_sample(
    tokenizer: PreTrainedTokenizerBase,
    image_ids: ImageTokenIds,
    caption: str,
    image: Image.Image,
    generate: bool,
    settings: SequenceSettings | None = None,
) -> Sample | None:
    """A caption pre-training sample from one image-caption pair; ``None`` if too long.

    ``generate``: ``[BOS] caption <img>..</img> [EOS]``, the picture is the regression target and ``<img>`` and
    EOS the only labels (as in a story). Otherwise ``[BOS] <img>..</img> caption [EOS]``: the picture is context
    and the caption (with EOS) is supervised. Stages 1 and 3 (``settings.sd_size`` set) need a target picture,
    so they always generate.

    Example::

        sample = build_caption_sample(tok, ids, "Pip is on the left.", picture, generate=True)
        sample.embeds_gen_mask  # tensor([True])
    """
    settings = settings or SequenceSettings()
    _check_image_tokens(image_ids, settings)
    generate = generate or settings.sd_size is not None
    img = image_string(settings.num_image_tokens)
    text = caption + img if generate else img + caption
    ids = torch.tensor(
        [tokenizer.bos_token_id, *tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]
    )
    if len(ids) >= settings.max_length:
        return None
    slots = image_slot_mask(ids, image_ids)
    labels = torch.full_like(ids, IGNORE_INDEX)
    if generate:  # as in a story: <img> and EOS are learnt, the picture's tokens are regressed
        learnt = (ids == image_ids.boi) | (torch.arange(len(ids)) == len(ids) - 1)
        labels[learnt] = ids[learnt]
    else:
        after = torch.arange(len(ids)) > int(torch.nonzero(ids == image_ids.eoi)[0])
        labels[after] = ids[after]
    sd_image, time_ids = (None, None)
    if settings.sd_size is not None:
        sd_image, time_ids = sd_transform(image, settings.sd_size, settings.swap_crop_offsets)
    return Sample(
        input_ids=ids,
        labels=labels,
        ids_cmp_mask=slots if not generate else torch.zeros_like(slots),
        ids_gen_mask=slots if generate else torch.zeros_like(slots),
        embeds_cmp_mask=torch.tensor([not generate]),
        embeds_gen_mask=torch.tensor([generate]),
        images=image_transform_batch([image.convert("RGB")], settings.image_size, settings.keep_ratio),
        text=text,
        sd_image=sd_image,
        time_ids=time_ids,
    )


def _pad(rows: list[torch.Tensor], length: int, value: int | bool) -> torch.Tensor:
    return torch.stack([torch.cat([r, torch.full((length - len(r),), value, dtype=r.dtype)]) for r in rows])


def collate(samples: Sequence[Sample], pad_token_id: int, pad_to: int | None = None) -> TrainBatch:
    """Right-pad and stack per-token tensors; concatenate pictures and picture masks along dim 0 (the release's
    build_long_story_datapipe).

    ``pad_to`` (e.g. ``max_length``) fixes the padded length; ``None`` pads to the longest sample.

    Example::

        loader = DataLoader(dataset, batch_size=30, collate_fn=functools.partial(collate, pad_token_id=0))
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    longest = max(len(s.input_ids) for s in samples)
    length = longest if pad_to is None else pad_to
    if length < longest:
        raise ValueError(f"pad_to={pad_to} is shorter than the longest sample ({longest})")
    lengths = torch.tensor([len(s.input_ids) for s in samples])
    return TrainBatch(
        input_ids=_pad([s.input_ids for s in samples], length, pad_token_id),
        attention_mask=(torch.arange(length) < lengths[:, None]).long(),
        labels=_pad([s.labels for s in samples], length, IGNORE_INDEX),
        ids_cmp_mask=_pad([s.ids_cmp_mask for s in samples], length, False),
        ids_gen_mask=_pad([s.ids_gen_mask for s in samples], length, False),
        embeds_cmp_mask=torch.cat([s.embeds_cmp_mask for s in samples]),
        embeds_gen_mask=torch.cat([s.embeds_gen_mask for s in samples]),
        images=torch.cat([s.images for s in samples]),
        texts=[s.text for s in samples],
        meta=[s.meta for s in samples],
        sd_images=_stack_optional([s.sd_image for s in samples]),
        time_ids=_stack_optional([s.time_ids for s in samples]),
    )


def _stack_optional(rows: list[torch.Tensor | None]) -> torch.Tensor | None:
    if all(r is None for r in rows):
        return None
    if any(r is None for r in rows):
        raise ValueError("either every sample or none has SD pictures")
    return torch.stack(rows)  # type: ignore[arg-type]
