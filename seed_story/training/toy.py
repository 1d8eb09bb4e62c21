"""The toy model: the ``tiny`` preset taught in ~20 s to write well-formed stories of the toy world.

Generation tests and benchmarks need a model that writes ``[INST]<caption><img>...</img></s>`` turn after turn
(random tiny weights babble; see ``seed_story.storyworld.toy``). It is an ordinary stage-2 run of the trainer
(:func:`toy_config`) on toy batches, with departures from the reference, for speed: every MLLM parameter trains
(``full_llm``: base weights too, LoRA included so it is non-zero; the fixed position tables stay frozen), every
caption is supervised (``ToyData.supervise_all``), not only the last, and the learning rate is high (5e-3 from
the first step, no weight decay, cosine to a tenth). Stories have 2..10 scenes, one random length per batch, so
nothing is padded; the regression loss is the reference's: the last picture of each story.

Example::

    parts = train_toy_model()                      # ~20 s on two CPU cores
    parts.mllm                                     # SeedStoryMLLM in eval mode, requires_grad off
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from seed_story.checkpoints.native import MANIFEST, save_checkpoint
from seed_story.components import Components
from seed_story.training.config import ToyData, TrainConfig
from seed_story.training.run import build_task
from seed_story.training.sources import toy_batches
from seed_story.training.trainer import Trainer


def toy_config(
    output_dir: str | Path, steps: int = 400, seed: int = 0, *, batch_size: int = 4, lr: float = 5e-3
) -> TrainConfig:
    """The toy model's training run (see the module docstring); its outputs go to ``output_dir``."""
    return TrainConfig.for_stage(
        "stage2",
        output_dir=str(output_dir),
        preset="tiny",
        seed=seed,
        max_steps=steps,
        save_every=steps,  # one resumable checkpoint, at the end: the run is too short to resume
        keep_checkpoints=1,
        learning_rate=lr,
        weight_decay=0.0,
        betas=(0.9, 0.999),
        eps=1e-8,
        # No warm-up: in a run this short the ramp (which starts at a rate of 0) cost the model its long stories.
        # With a 5% ramp, seeds 0 and 1 wrote 8 of 10 toy openings to 25 well-formed steps (10 without a ramp).
        warmup_steps=0,
        min_lr_ratio=0.1,
        mixed_precision="no",
        log_every=max(1, steps // 4),
        full_llm=True,
        data=ToyData(batch_size=batch_size, min_scenes=2, max_scenes=10, supervise_all=True),
    )


def train_toy_model(
    steps: int = 400, seed: int = 0, *, batch_size: int = 4, lr: float = 5e-3, output_dir: str | Path | None = None
) -> Components:
    """Train the MLLM of a random ``tiny`` model on toy stories; returns the components in eval mode.

    The trainer's outputs (metrics, loss plot, checkpoints) go to ``output_dir``, or to a temporary folder that is
    deleted. Deterministic for a seed on a given machine and thread count. The defaults give a model that writes
    25-step stories from almost any opening, following the place cycle.

    Example::

        parts = train_toy_model()
        parts.mllm  # SeedStoryMLLM in eval mode, requires_grad off
    """
    with tempfile.TemporaryDirectory(prefix="seed-story-toy-") as tmp:
        cfg = toy_config(output_dir or tmp, steps, seed, batch_size=batch_size, lr=lr)
        task = build_task(cfg)
        Trainer(cfg, task, toy_batches(cfg.stage, cfg.data, task.parts, cfg.seed)).fit()
    return task.parts.eval()


def toy_checkpoint(folder: str | Path) -> Path:
    """The toy model saved as a checkpoint in ``folder``; trained (~20 s) only where ``folder`` holds none yet.

    Example::

        spec = ModelSpec(path=str(toy_checkpoint("~/.cache/seed-story/toy")))
    """
    folder = Path(folder).expanduser()
    if not (folder / MANIFEST).is_file():
        parts = train_toy_model()
        modules = {"visual_tokenizer": parts.visual_tokenizer, "mllm": parts.mllm, "detokenizer": parts.detokenizer}
        save_checkpoint(folder, parts.config, {**modules, "vae": parts.vae}, tokenizer=parts.tokenizer,
                        metadata={"trained_by": "seed_story.training.toy.train_toy_model"})  # fmt: skip
    return folder
