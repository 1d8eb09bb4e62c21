"""StoryPipeline: inputs, the two halves, and their composition."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from seed_story.checkpoints.native import save_checkpoint
from seed_story.generation.pipeline import StoryInput, StoryPipeline
from seed_story.generation.settings import DrawSettings, SamplingSettings, WriterSettings
from seed_story.storyworld.toy import sample_story, scene_features

SCENES = sample_story(random.Random(77), 8)


class ToyWorldPipeline(StoryPipeline):
    """The toy model learnt the toy world's synthetic features, not its random ViT's: a solid picture whose red
    channel is 20 * i stands for scene i, and is "encoded" as that scene's features."""

    def encode_images(self, images):
        v = self.config.vision
        return torch.stack(
            [scene_features(SCENES[round(img.getpixel((0, 0))[0] / 20)], v.n_queries, v.output_dim) for img in images]
        )


def _scene_picture(i: int) -> Image.Image:
    return Image.new("RGB", (30, 20), (20 * i, 40, 90))


@pytest.fixture(scope="module")
def toy_pipe(toy_components) -> StoryPipeline:
    return ToyWorldPipeline(
        toy_components,
        writer_settings=WriterSettings(sampling=SamplingSettings(max_new_tokens=120)),
        draw_settings=DrawSettings(num_inference_steps=2, batch_size=3),
    )


@pytest.fixture(scope="module")
def pipe(toy_components) -> StoryPipeline:
    return StoryPipeline(
        toy_components,
        writer_settings=WriterSettings(sampling=SamplingSettings(max_new_tokens=120)),
        draw_settings=DrawSettings(num_inference_steps=2, batch_size=3),
    )


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))


def _caption(seed: int) -> str:
    return sample_story(random.Random(seed), 1)[0].caption


def test_composed_generation_equals_write_then_draw(toy_pipe):
    pipe = toy_pipe
    stories = [
        StoryInput(_scene_picture(1), SCENES[1].caption, num_steps=3),
        StoryInput(_scene_picture(2), SCENES[2].caption, num_steps=5),
    ]
    seen: list[tuple[int, int]] = []
    outputs = pipe.generate(stories, on_step=lambda story, step: seen.append((story, step.index)))
    # The same stories written by the MLLM alone, then drawn in one separate batch.
    requests, _ = pipe.requests(stories)
    written = pipe.write_story(requests)
    pictures = pipe.draw([s.features for story in written for s in story.steps])
    composed = [s.image for o in outputs for s in o.steps]
    assert [len(o.steps) for o in outputs] == [len(w.steps) for w in written] == [3, 5]
    assert sorted(seen) == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5)]
    assert len(pictures) == len(composed) == 8
    for a, b in zip(composed, pictures, strict=True):
        # The same features (written identically) drawn in other batches: the UNet's float rounding on the CPU
        # depends on the batch size, and now and then tips a pixel over to the next of 256 levels.
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1
    assert [s.text for s in outputs[1].steps] == [s.text for s in written[1].steps]
    size = pipe.config.detokenizer.image_size
    assert composed[0].size == (size, size)
    step = outputs[0].steps[0]
    assert step.prompt_tokens > 0 and step.kv_tokens > 0 and step.write_seconds > 0 and step.draw_seconds > 0


def test_illustrate_mode_draws_one_picture_per_text(toy_pipe):
    texts = [s.caption for s in SCENES[4:8]]
    out = toy_pipe(_scene_picture(3), SCENES[3].caption, texts=texts)
    assert out.texts == texts and len(out.images) == 4
    assert out.stop_reason == "steps"


def test_negative_features_are_computed_once(pipe, monkeypatch):
    calls = []
    vit = pipe.components.visual_tokenizer
    original = vit.negative_features
    monkeypatch.setattr(vit, "negative_features", lambda: calls.append(1) or original())
    pipe._negative = None
    pipe.draw(torch.randn(4, *pipe.negative_features.shape[1:]))
    pipe.draw(torch.randn(2, *pipe.negative_features.shape[1:]))
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("story", "message"),
    [
        (StoryInput(Image.new("RGB", (8, 8)), "   "), "opening text is empty"),
        (StoryInput(Image.new("RGB", (8, 8)), "Hi.", num_steps=0), "num_steps must be between 1"),
        (StoryInput(Image.new("RGB", (8, 8)), "Hi.", num_steps=10_000), "num_steps must be between 1"),
        (StoryInput(Image.new("RGB", (8, 8)), "Hi.", texts=[]), "texts is an empty list"),
        (StoryInput(Image.new("RGB", (8, 8)), "Hi.", texts=["ok", " "]), "empty at positions [1]"),
        (StoryInput("/nonexistent/start.png", "Hi."), "opening image not found"),
        (StoryInput(b"not a picture", "Hi."), "cannot be read as a picture"),
    ],
)
def test_bad_inputs_say_what_to_fix(pipe, story, message):
    with pytest.raises(ValueError, match=None) as err:
        pipe.generate([story])
    assert message in str(err.value)


def test_from_pretrained_loads_a_project_checkpoint(toy_components, tmp_path):
    parts = toy_components
    modules = {n: getattr(parts, n) for n in ("visual_tokenizer", "mllm", "detokenizer", "vae")}
    save_checkpoint(tmp_path / "ckpt", parts.config, modules, tokenizer=parts.tokenizer)
    pipe = StoryPipeline.from_pretrained(tmp_path / "ckpt", draw_settings=DrawSettings(num_inference_steps=1))
    buffer = io.BytesIO()
    _picture(9).save(buffer, format="PNG")
    out = pipe(buffer.getvalue(), _caption(9), num_steps=2)
    assert out.opening_image is not None and out.opening_image.size == (60, 40)
    assert len(out.steps) <= 2 and out.stop_reason in ("steps", "eos_without_image")


def test_samplers_share_the_noise_schedule_and_each_is_deterministic(pipe):
    """euler (the reference's), DPM-Solver++ 2M and UniPC draw from the same features; each repeats itself
    exactly and differs from the others; an unknown sampler is refused by the settings."""
    features = pipe.negative_features.expand(2, -1, -1) + 0.1
    drawn = {}
    for sampler in ("euler", "dpm++2m", "unipc"):
        pipe.draw_settings = DrawSettings(sampler=sampler, num_inference_steps=3, batch_size=2)
        first, again = pipe.draw(features), pipe.draw(features)
        assert [np.asarray(a).tobytes() for a in first] == [np.asarray(b).tobytes() for b in again]
        drawn[sampler] = np.asarray(first[0]).astype(int)
    assert (
        pipe.drawer.samplers["dpm++2m"].config.prediction_type == pipe.drawer.samplers["euler"].config.prediction_type
    )
    assert np.abs(drawn["euler"] - drawn["dpm++2m"]).max() > 0 and np.abs(drawn["euler"] - drawn["unipc"]).max() > 0
    with pytest.raises(ValueError, match="sampler"):
        DrawSettings(sampler="ddim")


def test_draw_fidelity_is_the_cosine_between_a_pictures_features_and_the_wanted_ones(pipe):
    pictures = [_scene_picture(i) for i in range(3)]
    own = pipe.encode_images(pictures)
    assert pipe.draw_fidelity(list(own), pictures) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    swapped = pipe.draw_fidelity([own[1], own[2], own[0]], pictures)
    assert all(value < 0.999 for value in swapped)
