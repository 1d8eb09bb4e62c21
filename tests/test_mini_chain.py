"""The SEED-Story-Mini recipe as a smoke run: the repo's own mini configs, a small world, two steps per stage.

The full training is `make -j2 train-mini` (docs/mini-model.md); this proves the chain of configs runs:
world -> shards + tokenizer -> vision and vae -> stage 1 and stage 2 -> stage 3 -> a model that writes and draws.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest

from seed_story.components import load_components
from seed_story.data.ingest import ingest_storystream
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.settings import DrawSettings, SamplingSettings, WriterSettings
from seed_story.storyworld.world import StoryWorld, write_storyworld
from seed_story.tokenizer import INST, train_bpe_tokenizer
from seed_story.training import TrainConfig, load_train_config, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "train"
STAGE2_PHASES = ("stage2_captions", "stage2", "stage2_late", "stage2_anneal")


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        ("stage1", "stage1_late", {"max_steps", "high_noise_weight"}),
        ("stage1_late", "stage1_longer", {"max_steps"}),
    ],
)
def test_mini_later_phases_only_resume_with_the_named_changes(before: str, after: str, changed: set[str]) -> None:
    first, late = (load_train_config(CONFIGS / f"mini_{name}.yaml") for name in (before, after))
    assert first.model_dump(exclude=changed) == late.model_dump(exclude=changed)
    assert late.max_steps > first.max_steps
    assert all(getattr(first, key) != getattr(late, key) for key in changed)


def test_mini_stage2_phases_start_from_each_other() -> None:
    phases = [load_train_config(CONFIGS / f"mini_{n}.yaml") for n in STAGE2_PHASES]
    assert phases[0].init == "runs/mini/vision/final" and phases[0].data.shards == "data/world/caption_shards"
    assert all(later.init == f"{earlier.output_dir}/final" for earlier, later in pairwise(phases))
    assert all(phase.data.shards == "data/world/shards" for phase in phases[1:])
    assert {phase.rec_loss for phase in phases} == {"cosine_and_centered"}
    assert all(phase.schedule_steps >= phase.max_steps for phase in phases if phase.schedule_steps)
    stage3 = load_train_config(CONFIGS / "mini_stage3.yaml")
    assert stage3.init == f"{phases[-1].output_dir}/final"


def test_mini_recipe_runs_end_to_end(tmp_path):
    world, runs = tmp_path / "world", tmp_path / "runs"
    write_storyworld(world, 12, seed=5, workers=1)
    ingest_storystream([world / "stories.jsonl"], world / "images", world / "shards")
    ingest_storystream([world / "captions.jsonl"], world / "images", world / "caption_shards", chunk_length=1)
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
            data["shards"] = str(world / ("caption_shards" if "caption" in data["shards"] else "shards"))
            data["num_workers"] = 0  # a 12-story world has too few row groups for the recipe's workers
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
    captions = run("stage2_captions", init=str(vision), vae_init=str(vae))
    stories = run("stage2", init=str(captions), vae_init=str(vae))
    late = run("stage2_late", init=str(stories), vae_init=str(vae))
    stage2 = run("stage2_anneal", init=str(late), vae_init=str(vae))
    final = run("stage3", init=str(stage2), detokenizer_init=str(stage1))

    parts = load_components(final)
    scale = parts.config.detokenizer.vae.scaling_factor
    assert scale != 1.0 and parts.vae.config.scaling_factor == scale  # set by the VAE stage, kept downstream
    assert parts.config.mllm.rec_loss == "cosine_and_centered"  # stage 2's loss, recorded in every later checkpoint
    pipe = StoryPipeline(parts, WriterSettings(sampling=SamplingSettings(max_new_tokens=40)),
                         DrawSettings(num_inference_steps=2))  # fmt: skip
    text, picture = StoryWorld(seed=9).opening(0)
    story = pipe(picture, text, texts=["Pip waved.", "Momo jumped."])
    assert [s.text for s in story.steps] == ["Pip waved.", "Momo jumped."][: len(story.steps)]
    assert all(s.image.size == (64, 64) for s in story.steps)
