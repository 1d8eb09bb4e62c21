"""Where a model trained on the story world loses "who stands where": teacher-forced probes of its stage-2 MLLM.

:func:`regression_report` measures how well the MLLM regresses a picture's ViT features on held-out stories. For
each story a prefix of k pictures (k drawn in 2..max_frames, as in stage 2) is fed with the true captions and the
true pictures as context (:func:`teacher_forced`); the MLLM regresses the last picture's features. The report gives
the cosine to the true features (and that of the mean feature, the no-information baseline), top-1 retrieval of the
true picture among the targets, and the judge's reading of the regressed features drawn by the de-tokenizer
(:func:`~seed_story.storyworld.judge.baselines.picture_agreement`); the same frames drawn from the true features
give the de-tokenizer's share. "described" is caption -> picture with no story (:func:`described`): held-out frames
described by ``describe_frame`` (the caption pre-training corpus's wording), judged alike.

Slot probes (:func:`slot_probe`) are linear probes fitted on training-world frames that read each slot's character
(or nobody) off the target's ViT features, its input-resampler embeddings (what the Llama sees of a context
picture), the Llama's hidden states at the target's image tokens, and the regressed features.

:func:`swapped_cast_partners` pairs frames for the de-tokenizer's conditioning-gap test (``bench/conditioning_gap.py``).

Example::

    report = regression_report(parts, StoryPipeline(parts), stories=48, probe_stories=640)
    report["cosine"], report["regressed"]["reconstruction"]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import PreTrainedTokenizerBase

from seed_story.components import Components
from seed_story.data.sequence import SequenceSettings, build_caption_sample, build_sequence, collate
from seed_story.generation.pipeline import StoryPipeline
from seed_story.storyworld.draw import render_frame
from seed_story.storyworld.judge.baselines import picture_agreement
from seed_story.storyworld.spec import SLOTS, WORLD, FrameTruth
from seed_story.storyworld.text import describe_frame
from seed_story.storyworld.world import StoryWorld
from seed_story.tokenizer import ImageTokenIds

CAST = (None, *WORLD.names)  # a slot probe's classes: nobody, then every character


class TeacherForced(NamedTuple):
    truth: list[Image.Image]  # the target pictures
    slots: torch.Tensor  # (N, 3) index into CAST of who stands left, centre, right
    target: torch.Tensor  # (N, T, D) their ViT features
    context: torch.Tensor  # (N, n, d) the input resampler's embeddings of the same pictures (as context)
    hidden: torch.Tensor  # (N, n, d) the Llama's last hidden states at the target's image-token positions
    regressed: torch.Tensor  # (N, T, D) the output resampler's regression


def _sequences(parts: Components) -> tuple[PreTrainedTokenizerBase, ImageTokenIds, SequenceSettings]:
    """The tokenizer, its image-token ids and sequence settings for ``parts`` (no length limit)."""
    n_tokens = parts.config.mllm.num_image_tokens
    ids = ImageTokenIds.from_tokenizer(parts.tokenizer, n_tokens)
    size = parts.config.vision.image_size
    return parts.tokenizer, ids, SequenceSettings(max_length=4096, num_image_tokens=n_tokens, image_size=size)


@torch.no_grad()
def teacher_forced(parts: Components, world_seed: int, stories: int, max_frames: int, chunk: int = 32) -> TeacherForced:
    """Prefixes of 2..max_frames true frames of ``stories`` stories; the last picture of each is the target."""
    tok, ids, settings = _sequences(parts)
    n_tokens = settings.num_image_tokens
    world, rng = StoryWorld(world_seed, frames=max_frames), random.Random(world_seed)
    mllm = parts.mllm.eval()
    parts_out: list[tuple[torch.Tensor, ...]] = []
    truth, slots = [], []
    for first in range(0, stories, chunk):
        samples = []
        for i in range(first, min(first + chunk, stories)):
            story = world.story(i)
            pictures = story.pictures(parts.config.detokenizer.image_size)
            k = rng.randint(2, max_frames)
            captions = [f.caption for f in story.frames]
            samples.append(build_sequence(tok, ids, captions, pictures, None, settings, length=k))
            truth.append(pictures[k - 1])
            slots.append([CAST.index(story.frames[k - 1].truth.in_slot(s)) for s in SLOTS])
        batch = collate(samples, tok.pad_token_id)
        embeds = parts.visual_tokenizer(batch.images).float()
        inputs = mllm.embed_inputs(batch.input_ids, embeds, batch.ids_cmp_mask, batch.embeds_cmp_mask)
        hidden = mllm.language_model(inputs_embeds=inputs, attention_mask=batch.attention_mask).last_hidden_state
        hidden = hidden[batch.ids_gen_mask].view(len(samples), n_tokens, -1)
        target = embeds[batch.embeds_gen_mask]
        parts_out.append((target, mllm.embed_images(target), hidden, mllm.regress_image_features(hidden)))
    target, context, hidden, regressed = (torch.cat(p) for p in zip(*parts_out, strict=True))
    return TeacherForced(truth, torch.tensor(slots), target, context, hidden, regressed)


@torch.no_grad()
def described(parts: Components, world_seed: int, count: int) -> tuple[list[Image.Image], torch.Tensor]:
    """Caption -> picture with no story: ``count`` held-out frames described (``describe_frame``), regressed."""
    tok, ids, settings = _sequences(parts)
    n_tokens = settings.num_image_tokens
    world, rng = StoryWorld(world_seed), random.Random(f"described:{world_seed}")
    truths = [world.story(i).frames[rng.randrange(world.frames)].truth for i in range(count)]
    pictures = [render_frame(t, parts.config.detokenizer.image_size) for t in truths]
    samples = [
        build_caption_sample(tok, ids, describe_frame(rng, t), p, True, settings)
        for t, p in zip(truths, pictures, strict=True)
    ]
    batch = collate(samples, tok.pad_token_id)
    mllm = parts.mllm.eval()
    inputs = mllm.embed_inputs(batch.input_ids)
    hidden = mllm.language_model(inputs_embeds=inputs, attention_mask=batch.attention_mask).last_hidden_state
    return pictures, mllm.regress_image_features(hidden[batch.ids_gen_mask].view(count, n_tokens, -1))


def slot_probe(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor) -> list[float]:
    """Held-out accuracy of a linear (softmax) probe per slot, on standardised flattened features."""
    train, test = train.flatten(1), test.flatten(1)
    mu, sd = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mu) / sd, (test - mu) / sd
    accuracy = []
    for slot in range(len(SLOTS)):
        weight = torch.zeros(train.shape[1], len(CAST), requires_grad=True)
        bias = torch.zeros(len(CAST), requires_grad=True)
        opt = torch.optim.Adam([weight, bias], lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            loss = F.cross_entropy(train @ weight + bias, y_train[:, slot]) + 1e-3 * weight.pow(2).sum()
            loss.backward()
            opt.step()
        accuracy.append(((test @ weight + bias).argmax(1) == y_test[:, slot]).float().mean().item())
    return accuracy


def regression_report(
    parts: Components,
    pipe: StoryPipeline,
    *,
    world_seed: int = 1,
    stories: int = 48,
    max_frames: int = 8,
    probe_stories: int = 640,
) -> dict[str, Any]:
    """The regression probe's numbers (see the module docstring); ``pipe`` draws the features, over ``parts``.

    Held-out stories come from ``world_seed``; the slot probes fit on ``probe_stories`` stories of seed 0 (the
    training world), or are skipped (an empty ``slot_probe_accuracy``) when it is 0.
    """
    held = teacher_forced(parts, world_seed, stories, max_frames)
    described_truth, described_regressed = described(parts, world_seed, stories)
    regressed, target = held.regressed, held.target
    mean = target.mean(0, keepdim=True).expand_as(target)
    similarity = F.normalize(regressed.flatten(1), dim=-1) @ F.normalize(target.flatten(1), dim=-1).T
    probes = {}
    if probe_stories:
        seen = teacher_forced(parts, 0, probe_stories, max_frames)
        for name in ("target", "context", "hidden", "regressed"):
            a, b = getattr(seen, name), getattr(held, name)
            if name != "context":  # tokens as the de-tokenizer reads them: L2-normalised
                a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
            probes[name] = slot_probe(a, seen.slots, b, held.slots)
        probes["majority"] = [
            (held.slots[:, s] == seen.slots[:, s].mode().values).float().mean().item() for s in range(len(SLOTS))
        ]
    return {
        "cosine": F.cosine_similarity(regressed, target, dim=-1).mean().item(),
        "cosine_of_mean_feature": F.cosine_similarity(mean, target, dim=-1).mean().item(),
        "retrieval_top1": (similarity.argmax(1) == torch.arange(len(target))).float().mean().item(),
        "regressed": picture_agreement(held.truth, pipe.draw(regressed)).model_dump(),
        "true_features": picture_agreement(held.truth, pipe.draw(target)).model_dump(),
        "described": picture_agreement(described_truth, pipe.draw(described_regressed)).model_dump(),
        "slot_probe_accuracy": probes,
    }


def swapped_cast_partners(frames: Sequence[FrameTruth]) -> list[int]:
    """For each frame, another frame of the same scene and style with a different cast or layout (itself if none).

    Conditioning a de-tokenizer on the partner's features keeps scene and style right, so the loss it adds is
    what the characters' identity and position in the features buy.
    """
    return [
        next((j for j, other in enumerate(frames) if (other.scene, other.style) == (f.scene, f.style)
              and other.characters != f.characters), i)
        for i, f in enumerate(frames)
    ]  # fmt: skip
