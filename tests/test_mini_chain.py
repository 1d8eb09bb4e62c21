"""The SEED-Story-Mini recipe as a smoke run: the repo's own mini configs, a small world, two steps per stage.

The full training is `make -j2 train-mini` (docs/mini-model.md); this proves the chain of configs runs:
world -> shards + tokenizer -> vision and vae -> stage 1 and stage 2 -> stage 3 -> a model that writes and draws.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
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

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "train"
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


def _make_plan() -> list[list[str]]:
    """The commands ``make -n train-mini`` would run from a clean checkout (no world, no runs), in order."""
    # Under `make test` (CI) this make is a sub-make: without --no-print-directory it prints "Entering directory".
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "train-mini"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return [shlex.split(line) for line in out.stdout.splitlines() if line.strip()]


def test_make_train_mini_fills_in_every_path_and_flag() -> None:
    plan = _make_plan()
    assert plan, "make -n train-mini printed nothing"
    for words in plan:
        command = " ".join(words)
        assert "$(" not in command and "//" not in command, command
        tool = next(w for w in words if w.endswith("seed-story"))
        assert tool == ".venv/bin/seed-story", command
        paths = [w for w in words if "/" in w and not w.startswith(("OMP_", "HF_"))]
        assert all(not w.startswith("/") for w in paths), f"an empty variable made an absolute path: {command}"
        if "train" in words:
            config = words[words.index("--config") + 1]
            assert (ROOT / config).is_file() and "--resume" in words, command
            assert words[words.index("train") + 1] == load_train_config(ROOT / config).stage, command
        else:
            assert all(w.startswith(("data/world", ".venv/")) for w in paths), command
    trained = [w[w.index("--config") + 1] for w in plan if "train" in w]
    assert trained[-1] == "configs/train/mini_stage3.yaml" and len(trained) == 10


def test_mini_recipe_runs_end_to_end(tmp_path):
    """The runs of ``make train-mini``, in its order, with its configs: two steps each on a 12-story world."""
    world, runs = tmp_path / "world", tmp_path / "runs"
    write_storyworld(world, 12, seed=5, workers=1)
    ingest_storystream([world / "stories.jsonl"], world / "images", world / "shards")
    ingest_storystream([world / "captions.jsonl"], world / "images", world / "caption_shards", chunk_length=1)
    captions = [
        INST + c for line in (world / "stories.jsonl").read_text().splitlines() for c in json.loads(line)["captions"]
    ]
    tok = train_bpe_tokenizer(captions, 1024, 16)
    tok.save_pretrained(str(world / "tokenizer"))
    assert len(tok) == 1042 and load_train_config(CONFIGS / "mini_vision.yaml").preset == "seed-story-mini"

    def here(path: str | None) -> str | None:
        """A config's path, moved from the recipe's folders (data/world, runs/mini) into this test's."""
        if path is None:
            return None
        return path.replace("data/world", str(world)).replace("runs/mini", str(runs))

    steps: dict[str, int] = {}
    final = None
    for words in _make_plan():
        if "train" not in words:
            continue
        cfg = load_train_config(ROOT / words[words.index("--config") + 1])
        data = cfg.data.model_dump()
        if data["kind"] == "pictures":
            data["images"] = here(data["images"])
        else:
            data["shards"] = here(data["shards"])
            data["num_workers"] = 0  # a 12-story world has too few row groups for the recipe's workers
        data["batch_size"] = 4
        # A later phase of a run (same output folder) resumes it for two more steps.
        steps[cfg.output_dir] = steps.get(cfg.output_dir, 0) + 2
        paths = {k: here(getattr(cfg, k)) for k in ("output_dir", "init", "vae_init", "detokenizer_init", "tokenizer")}
        values = dict(max_steps=steps[cfg.output_dir], save_every=2, warmup_steps=1, data=data, resume=True, **paths)
        result = train(TrainConfig.model_validate({**cfg.model_dump(), **values}))
        assert result.steps == steps[cfg.output_dir] and all(loss == loss for loss in result.losses)  # finite
        final = result.checkpoint
    assert final == runs / "stage3" / "final"

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
