"""The SEED-Story-Mini recipe as a smoke run: the repo's own mini configs, a small world, two steps per stage.

The full training is `make -j2 train-mini` (README "SEED-Story-Mini"); this proves the chain of configs runs:
world -> shards + tokenizer -> vision and vae -> stage 1 and stage 2 -> stage 3 -> a model that writes and draws.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seed_story.components import load_components
from seed_story.data.ingest import ingest_storystream
from seed_story.data.storyworld import StoryWorld, write_storyworld
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.settings import DrawSettings, SamplingSettings, WriterSettings
from seed_story.tokenizer import INST, train_bpe_tokenizer
from seed_story.training import TrainConfig, load_train_config, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "train"


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        ("stage1", "stage1_late", {"max_steps", "high_noise_weight"}),
        ("stage1_late", "stage1_longer", {"max_steps"}),
        ("stage2", "stage2_late", {"max_steps", "rec_loss"}),
    ],
)
def test_mini_later_phases_only_resume_with_the_named_changes(before: str, after: str, changed: set[str]) -> None:
    first, late = (load_train_config(CONFIGS / f"mini_{name}.yaml") for name in (before, after))
    assert first.model_dump(exclude=changed) == late.model_dump(exclude=changed)
    assert late.max_steps > first.max_steps
    assert all(getattr(first, key) != getattr(late, key) for key in changed)


def test_mini_recipe_runs_end_to_end(tmp_path):
    world, runs = tmp_path / "world", tmp_path / "runs"
    write_storyworld(world, 12, seed=5, workers=1)
    ingest_storystream([world / "stories.jsonl"], world / "images", world / "shards")
    captions = [
        INST + c for line in (world / "stories.jsonl").read_text().splitlines() for c in json.loads(line)["captions"]
    ]
    cfg = load_train_config(CONFIGS / "mini_vision.yaml")
    tok = train_bpe_tokenizer(captions, 1024, 16)
    tok.save_pretrained(str(world / "tokenizer"))
    assert len(tok) == 1042 and cfg.preset == "seed-story-mini"

    def run(stage: str, out: str | None = None, steps: int = 2, **paths: str) -> Path:
        cfg = load_train_config(CONFIGS / f"mini_{stage}.yaml")
        data = cfg.data.model_dump()
        if data["kind"] == "pictures":
            data["images"] = str(world / "images" / "**" / "*.png")
        else:
            data["shards"] = str(world / "shards")
        data["batch_size"] = 4
        values = dict(output_dir=str(runs / (out or stage)), max_steps=steps, save_every=2, warmup_steps=1, data=data,
                      resume=True, **paths)  # fmt: skip
        result = train(TrainConfig.model_validate({**cfg.model_dump(), **values}))
        assert result.steps == steps and all(loss == loss for loss in result.losses)  # finite
        return result.checkpoint

    vision = run("vision", tokenizer=str(world / "tokenizer"))
    vae = run("vae", tokenizer=str(world / "tokenizer"))
    run("stage1", init=str(vision), vae_init=str(vae))
    run("stage1_late", out="stage1", steps=4, init=str(vision), vae_init=str(vae))  # resumes at step 2
    stage1 = run("stage1_longer", out="stage1", steps=6, init=str(vision), vae_init=str(vae))
    run("stage2", init=str(vision), vae_init=str(vae))
    stage2 = run("stage2_late", out="stage2", steps=4, init=str(vision), vae_init=str(vae))
    final = run("stage3", init=str(stage2), detokenizer_init=str(stage1))

    parts = load_components(final)
    scale = parts.config.detokenizer.vae.scaling_factor
    assert scale != 1.0 and parts.vae.config.scaling_factor == scale  # set by the VAE stage, kept downstream
    assert parts.config.mllm.rec_loss == "centered_cosine"  # stage 2's late phase, recorded in every later checkpoint
    pipe = StoryPipeline(parts, WriterSettings(sampling=SamplingSettings(max_new_tokens=40)),
                         DrawSettings(num_inference_steps=2))  # fmt: skip
    text, picture = StoryWorld(seed=9).opening(0)
    story = pipe(picture, text, texts=["Pip waved.", "Momo jumped."])
    assert [s.text for s in story.steps] == ["Pip waved.", "Momo jumped."][: len(story.steps)]
    assert all(s.image.size == (64, 64) for s in story.steps)
